/**
 * A webhook receiver that says when to come back is heeded, through the real `mailgw serve`
 * (from source) and a real Bun.serve receiver: a 429 with `Retry-After: 2` (delay-seconds) and a
 * 503 with `Retry-After: <HTTP-date>` are not posted again before that time, although the
 * backoff (QUEUE_RETRY_BASE_SECONDS=0.05) would retry within a tenth of a second; a
 * `Retry-After` of a day is capped at the one-hour retry cap, and `queue list` shows what the
 * receiver asked for. Before, the header was ignored and a rate-limited receiver was hammered.
 * It holds for the URL, not only for the post that got it: other messages to that receiver wait
 * too (before, each was posted at once and got its own 429).
 */
import { afterEach, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { RawClient, greet, sendMail } from "../smtp/helpers.ts";
import { mailgwQueue, queueList, serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";
import { waitFor } from "./helpers.ts";

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

/** Each path's answers in order (then 200); the time of every post per path. */
function receiver(script: Record<string, (() => Response | Promise<Response>)[]>) {
  const posts: Record<string, number[]> = {};
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      await req.arrayBuffer();
      const path = new URL(req.url).pathname;
      (posts[path] ??= []).push(Date.now());
      const next = script[path]?.shift();
      return next ? await next() : new Response("ok");
    },
  });
  cleanups.push(() => server.stop(true));
  return { posts, base: `http://127.0.0.1:${server.port}` };
}

async function sendTo(port: number, rcpt: string): Promise<string> {
  const c = await RawClient.connect(port);
  try {
    expect(await greet(c)).toStartWith("250");
    const reply = await sendMail(c, rcpt, `From: a@sender.example\r\nTo: ${rcpt}\r\nSubject: hi\r\n\r\nbody\r\n`);
    const id = /^250 2\.0\.0 Queued as (\S+)/.exec(reply)?.[1];
    if (!id) throw new Error(`unexpected reply: ${reply}`);
    return id;
  } finally {
    c.end();
  }
}

test("Retry-After on a webhook's 429/503 delays the next post (seconds or HTTP-date), capped at one hour", async () => {
  const hook = receiver({
    "/limited": [() => new Response("slow down", { status: 429, headers: { "retry-after": "2" } })],
    // An HTTP-date 3 s ahead (second precision: at least 2 s from when the reply is read).
    "/busy": [() => new Response("maintenance", { status: 503, headers: { "retry-after": new Date(Date.now() + 3000).toUTCString() } })],
    "/day": Array.from({ length: 5 }, () => () => new Response("quota", { status: 429, headers: { "retry-after": "86400" } })),
  });
  const rule = (name: string, path: string) =>
    `  - { name: ${name}, action: webhook, url: "${hook.base}${path}", conditions: [{ field: rcpt, operator: equals, value: ${name}@company.com }] }`;
  const dir = serveDir();
  writeFileSync(
    join(dir, "rules.yaml"),
    ["domains: [company.com]", "default: { action: archive, category: default }", "rules:", rule("limited", "/limited"), rule("busy", "/busy"), rule("day", "/day"), ""].join("\n"),
  );
  const s: ServeProcess = await startServe("source", dir, { QUEUE_RETRY_BASE_SECONDS: "0.05", RATE_LIMIT_MAX: "1000" });
  cleanups.push(async () => {
    if (s.proc.exitCode === null && s.proc.signalCode === null) await s.stop("SIGKILL");
  });

  await sendTo(s.smtpPort, "limited@company.com");
  await sendTo(s.smtpPort, "busy@company.com");
  const day = await sendTo(s.smtpPort, "day@company.com");
  await waitFor(() => (hook.posts["/limited"]?.length ?? 0) >= 2 && (hook.posts["/busy"]?.length ?? 0) >= 2, 15_000, "both retried");
  const gap = (path: string) => hook.posts[path]![1]! - hook.posts[path]![0]!;
  expect(gap("/limited")).toBeGreaterThanOrEqual(1900);
  expect(gap("/busy")).toBeGreaterThanOrEqual(1500);

  // A day is more than the one-hour cap: the next try is due within the hour, and not much sooner.
  expect(hook.posts["/day"]).toHaveLength(1);
  const [entry] = (await queueList(dir)).filter((e) => e.id === day);
  expect(entry?.state).toBe("deferred");
  expect(entry?.lastError).toContain("Retry-After: 86400 s");
  const dueIn = Date.parse(entry!.nextAttemptAt!) - Date.now();
  expect(dueIn).toBeGreaterThan(55 * 60_000);
  expect(dueIn).toBeLessThanOrEqual(60 * 60_000);
  expect(await s.stop()).toBe(0);
}, 60_000);

test("Retry-After holds back the other messages to that URL too, not only the post that got it", async () => {
  const hook = receiver({ "/limited": [() => new Response("slow down", { status: 429, headers: { "retry-after": "3" } })] });
  const dir = serveDir();
  writeFileSync(
    join(dir, "rules.yaml"),
    ["domains: [company.com]", "default: { action: archive, category: default }", "rules:",
      `  - { name: limited, action: webhook, url: "${hook.base}/limited", conditions: [{ field: rcpt, operator: equals, value: limited@company.com }] }`, ""].join("\n"),
  );
  const s: ServeProcess = await startServe("source", dir, { QUEUE_RETRY_BASE_SECONDS: "0.05", RATE_LIMIT_MAX: "1000" });
  cleanups.push(async () => {
    if (s.proc.exitCode === null && s.proc.signalCode === null) await s.stop("SIGKILL");
  });

  await sendTo(s.smtpPort, "limited@company.com");
  await waitFor(() => (hook.posts["/limited"]?.length ?? 0) >= 1, 15_000, "the first post (429)");
  const limitedAt = hook.posts["/limited"]![0]!;
  // Two more messages for the receiver that asked for 3 s of quiet.
  await sendTo(s.smtpPort, "limited@company.com");
  await sendTo(s.smtpPort, "limited@company.com");
  await waitFor(() => (hook.posts["/limited"]?.length ?? 0) >= 4, 15_000, "all three delivered");
  // Nothing reached it before the 3 s it asked for (a little slack for timers).
  expect(hook.posts["/limited"]![1]! - limitedAt).toBeGreaterThanOrEqual(2900);
  expect(await s.stop()).toBe(0);
}, 60_000);

// `queue retry` means "the cause is fixed, send it now" (as it ends a relay suspension): a
// receiver's Retry-After must not hold the retried post back for up to an hour.
test("mailgw queue retry sends to a URL paused by Retry-After at once", async () => {
  const hook = receiver({ "/maint": [() => new Response("maintenance", { status: 503, headers: { "retry-after": "3600" } })] });
  const dir = serveDir();
  writeFileSync(
    join(dir, "rules.yaml"),
    ["domains: [company.com]", "default: { action: archive, category: default }", "rules:",
      `  - { name: maint, action: webhook, url: "${hook.base}/maint", conditions: [{ field: rcpt, operator: equals, value: maint@company.com }] }`, ""].join("\n"),
  );
  const s: ServeProcess = await startServe("source", dir, { QUEUE_RETRY_BASE_SECONDS: "0.05", RATE_LIMIT_MAX: "1000" });
  cleanups.push(async () => {
    if (s.proc.exitCode === null && s.proc.signalCode === null) await s.stop("SIGKILL");
  });

  const id = await sendTo(s.smtpPort, "maint@company.com");
  await waitFor(() => (hook.posts["/maint"]?.length ?? 0) >= 1, 15_000, "the first post (503)");
  await sendTo(s.smtpPort, "maint@company.com");
  const r = await mailgwQueue(dir, "retry", "--all");
  expect(r.code).toBe(0);
  expect(r.stdout).toContain("1 delivery queued for a new attempt");
  await waitFor(() => (hook.posts["/maint"]?.length ?? 0) >= 3, 10_000, "both posted after the retry");
  expect((await queueList(dir)).filter((e) => e.id === id)).toEqual([]);
  expect(await s.stop()).toBe(0);
}, 60_000);

// An HTTP-date is a moment, not a delay: it counts from when the reply came, not from when the
// post started. A receiver that took 3 s to answer "come back in 2 s" was left alone for 5 s.
test("a Retry-After HTTP-date from a slow receiver counts from its reply, not from the start of the post", async () => {
  let repliedAt = 0;
  const hook = receiver({
    "/slow": [
      async () => {
        await Bun.sleep(3000);
        repliedAt = Date.now();
        return new Response("busy", { status: 503, headers: { "retry-after": new Date(repliedAt + 2000).toUTCString() } });
      },
    ],
  });
  const dir = serveDir();
  writeFileSync(
    join(dir, "rules.yaml"),
    ["domains: [company.com]", "default: { action: archive, category: default }", "rules:",
      `  - { name: slow, action: webhook, url: "${hook.base}/slow", conditions: [{ field: rcpt, operator: equals, value: slow@company.com }] }`, ""].join("\n"),
  );
  const s: ServeProcess = await startServe("source", dir, { QUEUE_RETRY_BASE_SECONDS: "0.05", RATE_LIMIT_MAX: "1000" });
  cleanups.push(async () => {
    if (s.proc.exitCode === null && s.proc.signalCode === null) await s.stop("SIGKILL");
  });
  await sendTo(s.smtpPort, "slow@company.com");
  await waitFor(() => (hook.posts["/slow"]?.length ?? 0) >= 2, 20_000, "posted again");
  // The date has whole seconds: 1-2 s after the reply. Before: 3 s later than that.
  const waited = hook.posts["/slow"]![1]! - repliedAt;
  expect(waited).toBeGreaterThanOrEqual(900);
  expect(waited).toBeLessThan(3500);
  expect(await s.stop()).toBe(0);
}, 60_000);
