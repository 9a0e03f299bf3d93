/**
 * QUEUE_MAX_AGE_HOURS for forwards that wait for a slot of a relay whose attempts fail (expire.ts),
 * with the delivery worker and a real smtp-server relay that never answers MAIL FROM: the forwards
 * that found no slot are given up at the limit without an attempt. They were attempted once the
 * stalled attempts' deadlines freed the slots (another deadline each), and given up only then.
 */
import { afterEach, expect, test } from "bun:test";
import { silentLogger } from "../../src/log/logger.ts";
import { expireWaiting } from "../../src/queue/expire.ts";
import { retryNow } from "../../src/queue/queue-store.ts";
import { createDeliveryWorker } from "../../src/queue/worker.ts";
import { attemptsOf, counter, deliveryOf, makeEnv, relayVars, seedDelivery, startRelay, waitFor } from "./helpers.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

test("forwards waiting for a slot of a relay that stalls become failed at QUEUE_MAX_AGE_HOURS, without an attempt", async () => {
  const relay = await startRelay();
  cleanups.push(() => relay.close());
  relay.mode = "stall-mail";
  const t = makeEnv({ ...relayVars(relay), QUEUE_MAX_AGE_HOURS: "0.001" }); // 3.6 s
  const worker = createDeliveryWorker({ config: t.config, db: t.db, logger: silentLogger, pollIntervalMs: 50, attemptTimeoutMs: 1_500 });
  cleanups.push(() => worker.stop());
  // 32 take every relay slot until their deadline; the 8 behind them pass the limit meanwhile.
  const created = Date.now() - 3_000; // the limit passes 0.6 s from now
  const ids = Array.from({ length: 40 }, (_, i) => seedDelivery(t, { createdAt: created + i }));
  worker.start();
  await waitFor(() => ids.every((id) => deliveryOf(t.db, id).state === "failed"), 10_000, "every forward failed");
  const waited = ids.filter((id) => deliveryOf(t.db, id).attempts === 0);
  expect(waited).toHaveLength(8);
  for (const id of waited) {
    expect(deliveryOf(t.db, id).last_error).toStartWith("gave up after 0.001 h (QUEUE_MAX_AGE_HOURS) waiting for a slot while its target fails: ");
    expect(attemptsOf(t.db, id)).toEqual([]);
  }
  expect(counter(t.db, "failed:forward")).toBe(40);
}, 30_000);

test("the limit counts from a `queue retry`, not from the first queueing", () => {
  const t = makeEnv({ QUEUE_MAX_AGE_HOURS: "1" });
  const now = Date.now();
  const old = now - 2 * 3600 * 1000;
  const retried = seedDelivery(t, { createdAt: old, state: "failed" });
  const waiting = seedDelivery(t, { createdAt: old });
  expect(retryNow(t.db, [deliveryOf(t.db, retried).id], now - 1000)).toBe(1);
  const failing = { webhooks: new Map(), relay: { error: "451 4.3.0 try later", at: now } };
  const expired = expireWaiting(t.db, now, 1, failing);
  expect(expired.map((d) => d.messageId)).toEqual([waiting]);
  expect(deliveryOf(t.db, retried).state).toBe("queued");
  expect(deliveryOf(t.db, waiting).state).toBe("failed");
});
