/**
 * The compiled dist/mailgw runs its worker threads: copied outside the repository (which is
 * hidden when the system allows it), `serve` with a rule that reads `body` must parse in the
 * parse worker (log line "messages parsed in parse workers", a body-matched reject answered
 * 550, a body-matched archive stored under its category) and make spool files durable with
 * group syncfs (log line "spool files made durable by group syncfs", not the per-file
 * fallback); the accepted message is archived byte for byte.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import nodemailer from "nodemailer";
import { BARE_PATH, copyBinaryToTemp, hideRepoWrapper, runBinary, type CopiedBinary, freePort } from "../packaging/binary.ts";

/** How long the gateway may take to open its ports. */
const STARTUP_TIMEOUT_MS = 20_000;

let binary: CopiedBinary;
let work: string;

beforeAll(() => {
  binary = copyBinaryToTemp();
  work = mkdtempSync(join(tmpdir(), "mailgw-workers-"));
}, 60_000);
afterAll(() => {
  binary?.cleanup();
  if (work) rmSync(work, { recursive: true, force: true });
}, 60_000);

async function waitForHealthy(env: Record<string, string>, proc: { exitCode: number | null }): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`serve exited early with ${proc.exitCode}`);
    if ((await runBinary(binary.bin, ["healthcheck"], { cwd: work, env })).exitCode === 0) return;
    await Bun.sleep(200);
  }
  throw new Error("serve did not become healthy in time");
}

const RULES = [
  "domains: [example.test]",
  "default: { action: archive, category: default }",
  "rules:",
  "  - { name: no-xyz, action: reject, category: blocked, reject_message: body not welcome, conditions: [{ field: body, operator: contains, value: forbidden-xyz }] }",
  "  - { name: invoices, action: archive, category: invoices, conditions: [{ field: body, operator: contains, value: invoice-4711 }] }",
  "",
].join("\n");

test("compiled serve parses in its parse worker, syncs with group syncfs, archives", async () => {
  writeFileSync(join(work, "rules.yaml"), RULES);
  const [smtpPort, httpPort] = [await freePort(), await freePort()];
  const env = {
    SMTP_HOST: "127.0.0.1", SMTP_PORT: String(smtpPort), HTTP_HOST: "127.0.0.1", HTTP_PORT: String(httpPort),
    SMTP_HOSTNAME: "mx.example.test", LOG_FORMAT: "json", LOG_LEVEL: "info",
  };
  const serve = Bun.spawn([...(hideRepoWrapper() ?? []), binary.bin, "serve"], {
    cwd: work, env: { PATH: BARE_PATH, HOME: work, ...env }, stdout: "pipe", stderr: "pipe",
  });
  const output = Promise.all([new Response(serve.stdout).text(), new Response(serve.stderr).text()]);
  const raw = "From: sender@origin.example\r\nTo: user@example.test\r\nSubject: quarterly\r\n\r\nplease find invoice-4711 attached\r\n";
  let id = "";
  let rejected = "";
  try {
    await waitForHealthy(env, serve);
    const transport = nodemailer.createTransport({ host: "127.0.0.1", port: smtpPort, secure: false, ignoreTLS: true });
    const info = await transport.sendMail({ envelope: { from: "sender@origin.example", to: ["user@example.test"] }, raw });
    id = /Queued as (\S+)/.exec(info.response)?.[1] ?? "";
    rejected = await transport
      .sendMail({ envelope: { from: "sender@origin.example", to: ["user@example.test"] }, raw: "Subject: hi\r\n\r\nthis has forbidden-xyz in it\r\n" })
      .then((r) => `accepted: ${r.response}`, (err: { response?: string }) => err.response ?? String(err));
    transport.close();
    await Bun.sleep(300); // the archive copy runs just after the 250
  } finally {
    serve.kill("SIGTERM");
  }
  expect(await serve.exited).toBe(0);
  const log = (await output).join("\n");
  expect(rejected).toStartWith("550");
  expect(rejected).toContain("body not welcome");
  expect(id).not.toBe("");
  expect(log).toContain("messages parsed in parse workers");
  expect(log).not.toContain("parse workers did not start");
  expect(log).toContain("spool files made durable by group syncfs");
  expect(log).not.toContain("fsynced one by one");
  const stored = log.split("\n").find((line) => line.includes('"msg":"smtp session"') && line.includes(id)) ?? "";
  expect(stored).toContain('"category":"invoices"');
  const archiveDir = join(work, "data/archive");
  const days = existsSync(archiveDir) ? readdirSync(archiveDir) : [];
  const file = days.map((d) => join(archiveDir, d, `${id}.eml`)).find((p) => existsSync(p));
  if (!file) throw new Error(`archive file for ${id} not found under ${archiveDir}`);
  expect(readFileSync(file, "latin1").endsWith(raw)).toBe(true);
}, 90_000);
