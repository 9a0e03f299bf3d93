/**
 * A delivery attempt that serve's own stop cuts off (SIGTERM, as `systemctl restart` sends,
 * with a post still running after the 10 s grace) is no failure of its target: it is due again
 * as soon as serve starts, not after the 60 s backoff a timeout would earn (it waited that long
 * before), and the last error says why. Real serve from source, a Bun.serve webhook receiver
 * that first takes the post and never answers, then answers.
 */
import { expect, test } from "bun:test";
import { queueList, serveEachTest, until } from "../smtp/serve-process.ts";
import { greet, RawClient, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { startWebhookReceiver } from "../delivery/helpers.ts";
import { STOP_GRACE_MS, STOPPED_DURING_ATTEMPT } from "../../src/queue/worker.ts";

const serve = serveEachTest();

test("a post cut off by serve's stop is due again at the next start, without the backoff", async () => {
  const receiver = startWebhookReceiver({ stall: true });
  try {
    const rules = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: hook, action: webhook, url: "${receiver.url}", conditions: [{ field: rcpt, operator: equals, value: orders@company.com }] }
`;
    const first = await serve({ QUEUE_RETRY_BASE_SECONDS: "60" }, rules);
    const c = await RawClient.connect(first.smtpPort);
    await greet(c);
    const id = (await sendMail(c, "orders@company.com", simpleMessage("cut by stop"))).split(" ").pop() ?? "";
    c.end();
    // The post itself at the receiver (stalled there), not a time after the 250: a post not yet
    // started when SIGTERM comes is no attempt cut off, and serve stops at once.
    await until("the post taken by the receiver", async () => receiver.taken === 1, 15_000);
    const stoppedAt = Date.now();
    expect(await first.stop("SIGTERM")).toBe(0);
    expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(STOP_GRACE_MS - 1000);

    const [entry] = await queueList(first.dir);
    expect(entry).toMatchObject({ id, state: "deferred", attempts: 1 });
    expect(entry?.lastError).toStartWith(STOPPED_DURING_ATTEMPT);
    // Due at once: "now" or a time already past when listed.
    const next = entry?.nextAttemptAt ?? null;
    expect(next === null || next === "now" || Date.parse(next) <= Date.now()).toBe(true);

    receiver.stall = false;
    const second = await serve({ QUEUE_RETRY_BASE_SECONDS: "60" }, rules, first.dir);
    await second.waitForLog((l) => l.msg === "delivered" && l.id === id, 10_000);
    expect(receiver.posts).toHaveLength(1);
  } finally {
    receiver.stop();
  }
}, 60_000);
