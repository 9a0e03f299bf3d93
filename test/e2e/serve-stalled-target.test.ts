/**
 * One stalled delivery target must not hold back the others (SPEC §5, worker.ts's caps), through
 * the real `mailgw serve` (from source), a webhook receiver that takes the connection and never
 * answers, a healthy receiver and a real smtp-server relay:
 * - a backlog of large posts (>= LARGE_MESSAGE_BYTES) to the stalled receiver: small posts to
 *   another URL are delivered at once. They were left queued until the stalled attempts timed out
 *   (120 s), and then again: the claim read only as many due webhook rows as there were free slots,
 *   all of them the stalled URL's large posts that no large slot could take, so the healthy URL's
 *   rows were never read;
 * - large posts to the stalled receiver do not take every large-message slot: a large forward
 *   through the healthy relay is sent at once (it waited behind them the same way), and the
 *   reverse, a stalled relay's large forwards do not hold back a large post to a healthy receiver.
 */
import { afterEach, expect, test } from "bun:test";
import { relayVars, startRelay, startWebhookReceiver, type ScriptedRelay } from "../delivery/helpers.ts";
import { greet, RawClient, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { serveEachTest, until } from "../smtp/serve-process.ts";
import { LARGE_MESSAGE_BYTES } from "../../src/queue/worker.ts";

const serve = serveEachTest();
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

/** Counts posts; `stall`: takes the request and never answers it. */
function receiver(stall: boolean) {
  const r = startWebhookReceiver({ stall });
  cleanups.push(() => r.stop());
  return r;
}

async function relay(): Promise<ScriptedRelay> {
  const r = await startRelay();
  cleanups.push(() => r.close());
  return r;
}

function rules(stalledUrl: string, healthyUrl: string): string {
  return `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: to-stalled, priority: 30, action: webhook, url: "${stalledUrl}", conditions: [{ field: rcpt, operator: equals, value: stalled@company.com }] }
  - { name: to-healthy, priority: 20, action: webhook, url: "${healthyUrl}", conditions: [{ field: rcpt, operator: equals, value: healthy@company.com }] }
  - { name: forward, priority: 10, action: forward, forward_to: inbox@elsewhere.example, conditions: [{ field: rcpt, operator: equals, value: forward@company.com }] }
`;
}

const LARGE_BODY = `${"0123456789abcdef".repeat(4)}\r\n`.repeat(Math.ceil(LARGE_MESSAGE_BYTES / 66) + 100);

async function send(port: number, rcpts: string[], large: boolean): Promise<void> {
  const c = await RawClient.connect(port);
  await greet(c);
  for (const [i, rcpt] of rcpts.entries()) {
    expect(await sendMail(c, rcpt, simpleMessage(`message ${i}`, large ? LARGE_BODY : "Hi.\r\n"))).toStartWith("250 2.0.0");
  }
  c.end();
}

test("a backlog of large posts to a receiver that never answers: small posts to another URL go at once", async () => {
  const stalled = receiver(true);
  const healthy = receiver(false);
  const s = await serve(relayVars(await relay()), rules(stalled.url, healthy.url));
  await send(s.smtpPort, Array<string>(20).fill("stalled@company.com"), true);
  await send(s.smtpPort, ["healthy@company.com", "healthy@company.com", "healthy@company.com"], false);
  await until("the small posts reached the healthy receiver", async () => healthy.posts.length === 3, 15_000);
}, 60_000);

test("large posts to a receiver that never answers do not hold back a large forward through a healthy relay", async () => {
  const stalled = receiver(true);
  const healthy = receiver(false);
  const r = await relay();
  const s = await serve(relayVars(r), rules(stalled.url, healthy.url));
  await send(s.smtpPort, ["stalled@company.com", "stalled@company.com", "stalled@company.com"], true);
  await send(s.smtpPort, ["forward@company.com"], true);
  await until("the large forward reached the relay", async () => r.received.length === 1, 15_000);
}, 60_000);

test("large forwards to a relay that never answers do not hold back a large post to a healthy receiver", async () => {
  const stalled = receiver(true);
  const healthy = receiver(false);
  const r = await relay();
  r.mode = "stall";
  const s = await serve(relayVars(r), rules(stalled.url, healthy.url));
  await send(s.smtpPort, ["forward@company.com", "forward@company.com", "forward@company.com"], true);
  await send(s.smtpPort, ["healthy@company.com"], true);
  await until("the large post reached the healthy receiver", async () => healthy.posts.length === 1, 15_000);
}, 60_000);

test("four receivers that never answer, posted to from the start: posts to a healthy URL and forwards go at once", async () => {
  // Each URL not yet known to answer gets one slot: four of them took 4 slots each, all 16, from
  // their first posts until the 120 s deadline, and the healthy URL's posts waited that long.
  const stalled = receiver(true);
  const healthy = receiver(false);
  const r = await relay();
  const hooks = [0, 1, 2, 3].map((i) =>
    `  - { name: stalled-${i}, priority: ${40 + i}, action: webhook, url: "${stalled.url}${i}", conditions: [{ field: rcpt, operator: equals, value: stalled${i}@company.com }] }`);
  const s = await serve(relayVars(r), `${rules(stalled.url, healthy.url)}${hooks.join("\n")}\n`);
  await send(s.smtpPort, [0, 1, 2, 3].flatMap((i) => Array<string>(5).fill(`stalled${i}@company.com`)), false);
  await until("the stalled URLs' first posts are in flight", async () => s.logs.some((l) => l.msg === "smtp session" && l.rule === "stalled-3"), 10_000);
  await Bun.sleep(1_000);
  await send(s.smtpPort, ["healthy@company.com", "healthy@company.com", "healthy@company.com", "forward@company.com"], false);
  await until("the posts reached the healthy receiver", async () => healthy.posts.length === 3, 15_000);
  await until("the forward reached the relay", async () => r.received.length === 1, 5_000);
}, 60_000);

test("sixteen URLs whose posts fail, each with a backlog: posts to a healthy URL still go at once", async () => {
  // One slot each filled all 16; each slot a failure freed went to the failing URLs' older posts,
  // so the healthy post waited for every one of them to be tried (here 10 × 2 s; 10 × 120 s when
  // they never answer). The failing URLs now hold 12 slots at most.
  const failing = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    idleTimeout: 0,
    async fetch(req) {
      await req.arrayBuffer();
      await Bun.sleep(2_000);
      return new Response("down", { status: 503 });
    },
  });
  cleanups.push(() => failing.stop(true));
  const healthy = receiver(false);
  const hooks = Array.from({ length: 16 }, (_, i) =>
    `  - { name: failing-${i}, priority: ${40 + i}, action: webhook, url: "http://127.0.0.1:${failing.port}/hook${i}", conditions: [{ field: rcpt, operator: equals, value: failing${i}@company.com }] }`);
  const s = await serve({ QUEUE_RETRY_BASE_SECONDS: "600", RATE_LIMIT_MAX: "1000" }, `${rules(healthy.url, healthy.url)}${hooks.join("\n")}\n`);
  await send(s.smtpPort, Array.from({ length: 160 }, (_, i) => `failing${i % 16}@company.com`), false);
  await until("the first failures", async () => s.logs.some((l) => l.msg === "deferred"), 15_000);
  const sent = Date.now();
  await send(s.smtpPort, ["healthy@company.com"], false);
  await until("the post reached the healthy receiver", async () => healthy.posts.length === 1, 30_000);
  expect(Date.now() - sent).toBeLessThan(5_000);
}, 90_000);
