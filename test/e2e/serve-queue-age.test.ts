/**
 * QUEUE_MAX_AGE_HOURS for deliveries that wait behind a failing target (SPEC §5, expire.ts),
 * through the real `mailgw serve` (from source) and a real Bun.serve receiver:
 * - a backlog of posts to a URL that answers 500 slowly: the URL gets one slot, and the posts
 *   still waiting for it when they pass the limit become `failed` then, named in `queue list`
 *   and the log, with no attempt made. They stayed `queued` until their turn came (here 2 s per
 *   post; behind a receiver that never answers 120 s per post, days for a backlog);
 * - posts that wait behind a receiver that answers are not given up without their attempt.
 */
import { afterEach, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { greet, RawClient, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { queueList, serveDir, startServe, until, type ServeProcess } from "../smtp/serve-process.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

/** Answers each post after `delayMs` with `status`; counts them. */
function receiver(status: number, delayMs: number) {
  const posts: number[] = [];
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    idleTimeout: 0,
    async fetch(req) {
      await req.arrayBuffer();
      posts.push(Date.now());
      await Bun.sleep(delayMs);
      return new Response(status === 200 ? "ok" : "boom", { status });
    },
  });
  cleanups.push(() => server.stop(true));
  return { posts, url: `http://127.0.0.1:${server.port}/hook?token=s3cr3t` };
}

async function serveWith(url: string): Promise<{ s: ServeProcess; dir: string }> {
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: hook, action: webhook, url: "${url}", conditions: [{ field: rcpt, operator: equals, value: hook@company.com }] }
`);
  // 7.2 s; no retry within the test (the limit is then checked after each attempt, as before).
  const s = await startServe("source", dir, { QUEUE_MAX_AGE_HOURS: "0.002", QUEUE_RETRY_BASE_SECONDS: "600", RATE_LIMIT_MAX: "1000" });
  cleanups.push(() => s.proc.exitCode === null && s.stop("SIGKILL"));
  return { s, dir };
}

async function send(port: number, n: number): Promise<string[]> {
  const c = await RawClient.connect(port);
  await greet(c);
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const reply = await sendMail(c, "hook@company.com", simpleMessage(`message ${i}`, "Hi.\r\n"));
    ids.push(/^250 2\.0\.0 Queued as (\S+)/.exec(reply)?.[1] ?? reply);
  }
  c.end();
  return ids;
}

test("posts waiting for the one slot of a URL that fails become failed at QUEUE_MAX_AGE_HOURS, without an attempt", async () => {
  const hook = receiver(500, 2_000);
  const { s, dir } = await serveWith(hook.url);
  const ids = await send(s.smtpPort, 16);
  const sent = Date.now();
  // 16 posts × 2 s: the last would be tried (and failed after it) 32 s from now.
  await until("every post failed", async () => (await queueList(dir, "failed")).length === 16, 20_000);
  expect(Date.now() - sent).toBeLessThan(20_000);
  expect(hook.posts.length).toBeLessThan(12);
  const failed = await queueList(dir, "failed");
  const waited = failed.filter((e) => e.attempts === 0);
  expect(waited.length).toBeGreaterThan(4);
  for (const e of waited) {
    expect(e.lastError).toBe("gave up after 0.002 h (QUEUE_MAX_AGE_HOURS) waiting for a slot while its target fails: HTTP 500 Internal Server Error: boom");
  }
  const line = s.logs.find((l) => l.msg === "failed" && l.id === waited[0]!.id);
  expect(line).toMatchObject({ level: "error", kind: "webhook", rule: "hook", attempts: 0, error: waited[0]!.lastError });
  expect(String(line?.target)).not.toContain("s3cr3t");
  expect(ids).toContain(waited[0]!.id);
}, 60_000);

test("posts waiting for a URL that answers are not given up without their attempt", async () => {
  const hook = receiver(200, 1_500);
  const { s, dir } = await serveWith(hook.url);
  // One slot until the first answer, then four: 24 posts take about 10 s, the last ones wait past
  // the 7.2 s limit behind a receiver that is slow but answers.
  await send(s.smtpPort, 24);
  await until("every post delivered", async () => hook.posts.length === 24 && (await queueList(dir)).length === 0, 30_000);
  expect(s.logs.filter((l) => l.msg === "failed")).toEqual([]);
}, 60_000);
