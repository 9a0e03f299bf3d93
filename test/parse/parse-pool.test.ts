/**
 * Parse workers (src/parse/parse-pool.ts): facts parsed in a worker are identical to an
 * in-thread parse over a sample of the corpus (so are the decisions of a body/attachment rule
 * set), the bytes come back intact, and a worker that crashes or hangs on one message fails
 * only that job (ParseWorkerError, never a hang) while the pool replaces it and goes on.
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { extractFacts } from "../../src/parse/extract.ts";
import { ParsePool, ParseWorkerError } from "../../src/parse/parse-pool.ts";
import { classify } from "../../src/rules/classify.ts";
import { factNeeds } from "../../src/rules/fact-needs.ts";
import { parseRules } from "../../src/rules/load.ts";
import type { Envelope } from "../../src/types.ts";

const CORPUS = "/work/shared/corpus";
/** Every SAMPLE_STEP-th corpus file (sorted), to keep the run short. */
const SAMPLE_STEP = 5;
const ENVELOPE: Envelope = { mailFrom: "sender@example.org", rcptTo: ["sales@company.com"], clientIp: "192.0.2.1", helo: "mx.example.org", tls: false };
const CONTENT_RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: pdf, priority: 90, action: drop, category: pdf, conditions: [{ field: attachment_type, operator: contains, value: pdf }] }
  - { name: named-att, priority: 80, action: archive, category: att, conditions: [{ field: attachment, operator: exists }] }
  - { name: unsub, priority: 70, action: drop, category: unsub, conditions: [{ field: body, operator: regex, value: '(?i)unsubscribe' }] }
  - { name: http, priority: 60, action: archive, category: http, conditions: [{ field: body, operator: contains, value: "http" }] }
`;

const pools: ParsePool[] = [];
afterAll(async () => {
  for (const pool of pools) await pool.close();
}, 60_000);

async function startPool(opts: Parameters<typeof ParsePool.start>[0] = {}): Promise<ParsePool> {
  const started = await ParsePool.start(opts);
  if (!started.pool) throw new Error(`parse pool did not start: ${started.reason}`);
  pools.push(started.pool);
  return started.pool;
}

function emlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return emlFiles(path);
    return name.endsWith(".eml") ? [path] : [];
  }).sort();
}

function message(extra: string): Uint8Array {
  return new TextEncoder().encode(`From: a@example.org\r\nSubject: s\r\n${extra}\r\nhello body\r\n`);
}

test("worker parse gives the same facts and decisions as in-thread parse (corpus sample)", async () => {
  if (!existsSync(CORPUS)) {
    console.log(`skipped: no corpus at ${CORPUS}`);
    return;
  }
  const loaded = parseRules(CONTENT_RULES.replace("(?i)unsubscribe", "[Uu]nsubscribe"), "content.yaml");
  if (!loaded.ok) throw new Error("test rules do not load");
  expect(factNeeds(loaded.rules).content).toBe(true);
  const pool = await startPool({ size: 2 });
  const files = emlFiles(CORPUS).filter((_, i) => i % SAMPLE_STEP === 0);
  expect(files.length).toBeGreaterThan(150);
  const categories = new Set<string>();
  for (const file of files) {
    const original = readFileSync(file);
    const expected = await extractFacts(original, ENVELOPE);
    // A fresh buffer that owns its ArrayBuffer: transferred to the worker and back.
    const owned = new Uint8Array(original);
    // A view into a bigger buffer: copied to the worker, the caller keeps it.
    const view = Buffer.concat([Buffer.alloc(1), original]).subarray(1);
    const [content, headerOnly] = await Promise.all([
      pool.parse(owned, ENVELOPE, { content: true }),
      pool.parse(view, ENVELOPE, { content: false }),
    ]);
    expect(content.facts).toEqual(expected);
    expect(headerOnly.facts).toEqual(await extractFacts(original, ENVELOPE, { content: false }));
    expect(Buffer.from(content.bytes).equals(original)).toBe(true);
    expect(headerOnly.bytes).toBe(view);
    expect(owned.byteLength).toBe(0); // transferred away: the caller uses content.bytes
    const decision = classify(content.facts, loaded.rules, { trace: false }).decision;
    expect(decision).toEqual(classify(expected, loaded.rules, { trace: false }).decision);
    categories.add(decision.category);
  }
  expect(categories.size).toBeGreaterThanOrEqual(3);
}, 120_000);

test("a worker crash or hang fails only that job, and the pool recovers", async () => {
  const pool = await startPool({ size: 1, timeoutMs: 1500, specifier: new URL("./fixtures/faulty-parse-worker.ts", import.meta.url).href });
  const crash = pool.parse(message("X-Test-Fault: crash\r\n"), ENVELOPE, { content: true });
  const after = pool.parse(message("X-Ok: 1\r\n"), ENVELOPE, { content: true });
  const crashError = await crash.catch((err: unknown) => err);
  expect(crashError).toBeInstanceOf(ParseWorkerError);
  expect((await after).facts.body.trim()).toBe("hello body");

  const t0 = performance.now();
  const hang = await pool.parse(message("X-Test-Fault: hang\r\n"), ENVELOPE, { content: true }).catch((err: unknown) => err);
  expect(hang).toBeInstanceOf(ParseWorkerError);
  expect(String(hang)).toContain("longer than 1500 ms");
  expect(performance.now() - t0).toBeLessThan(5000);
  const again = await pool.parse(message("X-Ok: 2\r\n"), ENVELOPE, { content: false });
  expect(again.facts.subject).toBe("s");
  expect(pool.restarts).toBe(2);
  expect(pool.usable).toBe(true);
}, 30_000);
