/**
 * Test harness for the pipeline: a real data dir, SQLite file and rules file in a mkdtemp
 * directory per test, the real parser and classifier. Nothing is mocked.
 */
import type { Database } from "bun:sqlite";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig, type Config } from "../../src/config/config.ts";
import { silentLogger, type Logger } from "../../src/log/logger.ts";
import { createPipeline, type Pipeline } from "../../src/pipeline.ts";
import { startRulesRuntime, type RulesRuntime } from "../../src/rules-runtime/runtime.ts";
import { openDatabase } from "../../src/store/db.ts";
import type { Envelope } from "../../src/types.ts";

export const RULES_YAML = `
domains: [example.com]
default: { action: archive, category: default }
rules:
  - name: reject-spam
    priority: 1000
    category: spam
    action: reject
    reject_message: "Spam is not welcome here"
    conditions:
      - { field: subject, operator: regex, value: '^\\[SPAM\\]' }
  - name: reject-plain
    priority: 900
    category: spam
    action: reject
    conditions:
      - { field: subject, operator: contains, value: rejectplain }
  - name: to-sales
    priority: 100
    category: sales
    action: forward
    forward_to: [sales@partner.org]
    conditions:
      - { field: subject, operator: contains, value: quote }
  - name: to-sales-archived
    priority: 90
    category: sales
    action: forward
    archive: true
    forward_to: sales@partner.org
    conditions:
      - { field: subject, operator: contains, value: keepcopy }
  - name: orders-hook
    priority: 50
    category: orders
    action: webhook
    url: https://erp.partner.org/inbound
    conditions:
      - { field: subject, operator: contains, value: order }
  - name: drop-noise
    priority: 40
    category: noise
    action: drop
    conditions:
      - { field: subject, operator: contains, value: dropme }
`;

export interface Harness {
  dir: string;
  config: Config;
  db: Database;
  rules: RulesRuntime;
  pipeline: Pipeline;
  /** Closes a pipeline and opens a new one on the same files (a restart). */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export async function makeConfig(dir: string, env: Record<string, string> = {}): Promise<Config> {
  return loadConfig({
    env: {
      DATA_DIR: join(dir, "data"),
      DATABASE_URL: `file:${join(dir, "mailgw.db")}`,
      RULES_FILE: join(dir, "rules.yaml"),
      LOG_LEVEL: "error",
      ...env,
    },
    cwd: dir,
    envFile: join(dir, "no.env"),
    isTty: false,
  });
}

export async function makeHarness(
  opts: { env?: Record<string, string>; logger?: Logger; rulesYaml?: string; recover?: boolean; afterBigMessage?: () => void; now?: () => number } = {},
): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), "mailgw-pipeline-"));
  await writeFile(join(dir, "rules.yaml"), opts.rulesYaml ?? RULES_YAML);
  const config = await makeConfig(dir, opts.env);
  const logger = opts.logger ?? silentLogger;
  const h: Harness = {
    dir,
    config,
    db: openDatabase(config.databasePath),
    rules: await startRulesRuntime({ file: config.rulesFile, logger, watch: false }),
    pipeline: null as unknown as Pipeline,
    async restart() {
      await h.pipeline.close();
      h.db.close();
      h.db = openDatabase(config.databasePath);
      h.pipeline = createPipeline({ config, db: h.db, logger, rules: h.rules });
      await h.pipeline.recover();
    },
    async close() {
      await h.pipeline.close();
      h.rules.close();
      h.db.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  h.pipeline = createPipeline({ config, db: h.db, logger, rules: h.rules, afterBigMessage: opts.afterBigMessage, ...(opts.now ? { now: opts.now } : {}) });
  if (opts.recover !== false) await h.pipeline.recover();
  return h;
}

export function envelope(overrides: Partial<Envelope> = {}): Envelope {
  return { mailFrom: "alice@sender.org", rcptTo: ["bob@example.com"], clientIp: "192.0.2.7", helo: "mx.sender.org", tls: false, ...overrides };
}

export function message(subject: string, bodyBytes = 200, extraHeaders = ""): Uint8Array<ArrayBuffer> {
  const body = "Lorem ipsum dolor sit amet.\r\n".repeat(Math.max(1, Math.ceil(bodyBytes / 29)));
  return new TextEncoder().encode(
    `Received: from mx.sender.org ([192.0.2.7]) by gw.example.com with ESMTP; Mon, 1 Jan 2024 00:00:00 +0000\r\n` +
      `From: Alice <alice@sender.org>\r\nTo: bob@example.com\r\nSubject: ${subject}\r\n` +
      `Message-ID: <../../etc/passwd@evil>\r\n${extraHeaders}MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n${body}`,
  );
}

/** Every file under a directory, as paths relative to it. */
export async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}
