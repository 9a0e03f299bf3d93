/**
 * A seeded random fuzzer of SMTP sessions against the real `mailgw serve` (from source), for the
 * invariants SPEC §4 and §1 promise whatever a client sends:
 * - every `250 2.0.0 Queued as <id>` has exactly one archive file, whose bytes after our
 *   Received header are the message as the client meant it (dot-unstuffed);
 * - a message refused, or cut before its final dot, is in no archive file, and every archive
 *   file is a message that got a 250 (or whose client left between the final dot and the reply);
 * - every reply is well-formed (3-digit code, consistent multiline lines, CRLF), every command
 *   is answered within a bound, new connections are served and serve stays up;
 * - one `smtp session` log line per connection, and no error lines;
 * - the counters of /stats.json agree with the replies (a session cut in the middle of a command
 *   line may be counted as closed for too many errors: its partial last line is still answered).
 * FUZZ_SEED / FUZZ_SESSIONS replay or widen a run; a failure names its session (seed-number).
 */
import { afterAll, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { seeded } from "../helpers/seeded.ts";
import { archiveFiles } from "../helpers/interop.ts";
import { replyProblems, runSession, type SessionResult } from "../helpers/smtp-fuzz.ts";
import { makeCert } from "../smtp/helpers.ts";
import { queueList, serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";

const SEED = Number(process.env.FUZZ_SEED ?? 7);
const SESSIONS = Number(process.env.FUZZ_SESSIONS ?? 300);
const WORKERS = 8;
const MAX_BYTES = Math.floor(0.25 * 1024 * 1024);

/** Every action: rejects by subject and attachment, a drop, a forward held without a relay, a webhook to a closed port. */
const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: reject-spam, priority: 100, category: spam, action: reject, reject_message: "Message rejected as spam", conditions: [{ field: subject, operator: contains, value: "[SPAM]" }] }
  - { name: reject-exe, priority: 90, action: reject, conditions: [{ field: attachment, operator: ends_with, value: ".exe" }] }
  - { name: drop-it, priority: 80, action: drop, conditions: [{ field: subject, operator: contains, value: "[DROP]" }] }
  - { name: to-fwd, priority: 50, action: forward, forward_to: [out@elsewhere.example], archive: true, conditions: [{ field: rcpt, operator: equals, value: fwd@company.com }] }
  - { name: to-hook, priority: 40, action: webhook, url: "http://127.0.0.1:41999/hook", conditions: [{ field: rcpt, operator: equals, value: hook@company.com }] }
`;

const serves: ServeProcess[] = [];
afterAll(async () => {
  for (const s of serves) if (s.proc.exitCode === null) await s.stop("SIGKILL");
}, 30_000);

/** Our Received header: the `Received:` line, tab-continued lines up to the date line, and the
 * empty line added when the client's first byte is a space or tab (received-header.ts). */
const RECEIVED = /^Received: [^\r\n]*\r\n(?:\t[^\r\n]*\r\n)*?\t(?:Sun|Mon|Tue|Wed|Thu|Fri|Sat), \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d \+0000\r\n/;

function afterReceived(file: Buffer, expected: Buffer): Buffer | null {
  const text = file.toString("latin1");
  const m = RECEIVED.exec(text);
  if (!m) return null;
  let rest = file.subarray(m[0].length);
  if ((expected[0] === 0x20 || expected[0] === 0x09) && rest.subarray(0, 2).toString() === "\r\n") rest = rest.subarray(2);
  return rest;
}

const queuedId = (reply: string | null): string | null => /^250 2\.0\.0 Queued as (\S+)$/.exec(reply ?? "")?.[1] ?? null;

/**
 * What is stored against what the clients were told: each 250 is in the archive (bytes as
 * sent) or the queue (or was a drop), no id was given twice, and nothing stored lacks a 250
 * unless its client left between the final dot and the reply (`maybe` counts those).
 */
async function storedProblems(dir: string, results: readonly SessionResult[]): Promise<{ problems: string[]; maybe: number }> {
  const problems: string[] = [];
  const files = new Map(archiveFiles(join(dir, "data")).map((f) => [basename(f, ".eml"), f]));
  const rows = new Set((await queueList(dir, "queued,deferred,held,delivering,failed,delivered")).map((e) => e.id));
  const seen = new Set<string>();
  for (const r of results) {
    for (const [i, m] of r.messages.entries()) {
      const id = queuedId(m.reply);
      // A message whose header section is the generator's plain one is classified by its Subject.
      const clean = /^From: a@sender\.example\r\nTo: b@company\.com\r\nSubject: (\[SPAM\]|\[DROP\]|fuzz)/.exec(m.expected.toString("latin1"))?.[1];
      if (m.reply && !m.reply.startsWith("552 ") && clean === "[SPAM]" && !m.reply.startsWith("550 5.7.1 Message rejected as spam")) problems.push(`${r.label} message ${i}: [SPAM] subject answered ${m.reply}`);
      if (id !== null && clean === "[DROP]" && (files.has(id) || rows.has(id))) problems.push(`${r.label} message ${i}: [DROP] subject stored as ${id}`);
      if (id === null) {
        if (m.reply?.startsWith("250")) problems.push(`${r.label} message ${i}: odd 250: ${m.reply}`);
        continue;
      }
      if (seen.has(id)) problems.push(`${r.label} message ${i}: ${id} was given to another message too`);
      seen.add(id);
      const file = files.get(id);
      if (!file) {
        // Not archived: a forward-only or webhook delivery in the queue, or a drop.
        if (!rows.has(id) && !m.expected.includes("[DROP]")) problems.push(`${r.label} message ${i}: 250 for ${id} but no archive file and no queue row`);
        continue;
      }
      const body = afterReceived(readFileSync(file), m.expected);
      if (body === null) problems.push(`${r.label} message ${i}: ${id} has no Received header of ours`);
      else if (!body.equals(m.expected)) problems.push(`${r.label} message ${i}: ${id} stored ${JSON.stringify(body.toString("latin1").slice(0, 300))}, sent ${JSON.stringify(m.expected.toString("latin1").slice(0, 300))}`);
    }
  }
  // A message whose client left after the final dot may be stored (its reply was never read).
  const maybe = results.flatMap((r) => r.messages.filter((m) => m.reply === null && m.complete)).length;
  const unexplained = [...new Set([...files.keys(), ...rows])].filter((id) => !seen.has(id));
  if (unexplained.length > maybe) problems.push(`${unexplained.length} archive files or queue rows without a 250 (at most ${maybe} clients left after the final dot): ${unexplained.slice(0, 5).join(",")}`);

  return { problems, maybe };
}

async function fuzz(tls: boolean): Promise<void> {
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), RULES);
  const env: Record<string, string> = { RATE_LIMIT_MAX: "1000000", MAX_MESSAGE_SIZE_MB: "0.25", LOG_LEVEL: "debug" };
  if (tls) {
    const { key, cert } = makeCert(dir);
    Object.assign(env, { SMTP_TLS_KEY: key, SMTP_TLS_CERT: cert });
  }
  const serve = await startServe("source", dir, env);
  serves.push(serve);
  const results: SessionResult[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < SESSIONS) {
      const n = next++;
      const rand = seeded(SEED * 1_000_003 + n);
      results.push(await runSession(serve.smtpPort, rand, `fz${SEED}-${n}`, { bigBytes: MAX_BYTES + 1000, replyMs: 15_000, tls }));
    }
  };
  await Promise.all(Array.from({ length: WORKERS }, worker));

  const problems: string[] = [];
  for (const r of results) {
    for (const p of [...r.problems, ...replyProblems(r.raw)]) problems.push(`${r.label}: ${p}`);
  }
  expect(serve.proc.exitCode).toBeNull();
  // Every connection's session line is written (after the close: allow a moment).
  await serve.waitForLog(() => serve.logs.filter((l) => l.msg === "smtp session").length >= results.length, 20_000).catch(() => undefined);
  const sessionLines = serve.logs.filter((l) => l.msg === "smtp session");
  if (sessionLines.length !== results.length) problems.push(`${sessionLines.length} smtp session lines for ${results.length} sessions`);

  const { problems: stored, maybe } = await storedProblems(dir, results);
  problems.push(...stored);

  // The server still serves a plain session.
  const after = await runSession(serve.smtpPort, seeded(1), "after", { bigBytes: 0, replyMs: 15_000 });
  problems.push(...after.problems.map((p) => `after: ${p}`));
  const errors = serve.logs.filter((l) => l.level === "error" || l.level === "fatal");
  problems.push(...errors.slice(0, 5).map((l) => `error log: ${JSON.stringify(l).slice(0, 300)}`));

  // The counters agree with what the clients were told (maybe-stored messages may count too).
  const replies = results.flatMap((r) => r.exchanges.map((e) => e.reply));
  const count = (re: RegExp): number => replies.filter((x) => re.test(x)).length;
  const queued = results.flatMap((r) => r.messages).filter((m) => queuedId(m.reply)).length;
  const finals = results.flatMap((r) => r.messages.map((m) => m.reply ?? ""));
  const want = { accepted: queued, reject: finals.filter((x) => x.startsWith("550 ")).length, too_big: count(/^552 /), too_many_errors: results.filter((r) => /^421 .*too many errors/m.test(r.raw)).length };
  let got: Record<string, number> = {};
  const read = async (): Promise<void> => {
    const stats = (await (await fetch(new URL("/stats.json", serve.httpUrl))).json()) as { totals: { today: { received: number; sessions: number; byAction: Record<string, number>; refused: Record<string, number> } } };
    const t = stats.totals.today;
    got = { accepted: t.byAction.archive! + t.byAction.forward! + t.byAction.webhook! + t.byAction.drop!, reject: t.byAction.reject!, too_big: t.refused.too_big!, too_many_errors: t.refused.too_many_errors!, received: t.received, sessions: t.sessions };
  };
  const agrees = (): boolean => got.accepted! >= want.accepted && got.accepted! <= want.accepted + maybe && got.reject! >= want.reject && got.reject! <= want.reject + maybe && got.too_big === want.too_big && got.too_many_errors! >= want.too_many_errors && got.received === got.accepted! + got.reject! && got.sessions === results.length + 1;
  for (let i = 0; i < 40 && (await read(), !agrees()); i++) await Bun.sleep(100);
  if (!agrees()) problems.push(`stats ${JSON.stringify(got)} for clients' ${JSON.stringify(want)} (+${maybe} maybe), ${results.length + 1} sessions`);
  console.log(`fuzz seed ${SEED}${tls ? " (tls)" : ""}: ${results.length} sessions, ${replies.length} replies, ${results.reduce((n, r) => n + r.messages.length, 0)} messages, ${queued} queued, ${maybe} maybe; stats ${JSON.stringify(got)}`);
  expect(problems.slice(0, 30)).toEqual([]);
  expect(await serve.stop()).toBe(0);
}

test(`random SMTP sessions (seed ${SEED}, ${SESSIONS} sessions) keep every invariant`, () => fuzz(false), 120_000);
test(`random SMTP sessions with STARTTLS offered (seed ${SEED}, ${SESSIONS} sessions) keep every invariant`, () => fuzz(true), 120_000);

/**
 * SIGTERM in the middle of the random sessions (SPEC §1: stop accepting, finish sessions in
 * flight, exit 0): every 250 given before or during the stop is stored, nothing else is, and a
 * restart on the same data dir (spool recovery) keeps exactly that.
 */
test(`SIGTERM during random SMTP sessions (seed ${SEED}) loses and invents nothing, also across a restart`, async () => {
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), RULES);
  const env = { RATE_LIMIT_MAX: "1000000", MAX_MESSAGE_SIZE_MB: "0.25" };
  const serve = await startServe("source", dir, env);
  serves.push(serve);
  const rand = seeded(SEED);
  const results: SessionResult[] = [];
  let next = 0;
  const stopped: Promise<number>[] = [];
  const stopAfter = 40 + Math.floor(rand() * 80);
  const worker = async (): Promise<void> => {
    while (next < 200) {
      const n = next++;
      if (n === stopAfter) stopped.push(serve.stop("SIGTERM"));
      const r = await runSession(serve.smtpPort, seeded(SEED * 7_000_003 + n), `st${SEED}-${n}`, { bigBytes: MAX_BYTES + 1000, replyMs: 20_000 }).catch(() => null);
      if (r) results.push(r);
    }
  };
  await Promise.all(Array.from({ length: WORKERS }, worker));
  expect(await Promise.all(stopped)).toEqual([0]);
  const problems = results.flatMap((r) => [...r.problems, ...replyProblems(r.raw)].map((p) => `${r.label}: ${p}`));
  problems.push(...(await storedProblems(dir, results)).problems);
  const again = await startServe("source", dir, env);
  serves.push(again);
  expect(await again.stop()).toBe(0);
  problems.push(...(await storedProblems(dir, results)).problems.map((p) => `after restart: ${p}`));
  console.log(`stop fuzz seed ${SEED}: stop after session ${stopAfter}, ${results.length} sessions ran, ${results.flatMap((r) => r.messages).filter((m) => queuedId(m.reply)).length} queued`);
  expect(problems.slice(0, 30)).toEqual([]);
}, 120_000);
