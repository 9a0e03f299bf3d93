/**
 * A clock set far ahead and then corrected (NTP after a bad RTC): deliveries queued or deferred
 * meanwhile carry retry times in that future. The worker makes them due again instead of
 * waiting for the clock to catch up; intake rows held back until durable stay held back.
 */
import { afterEach, expect, test } from "bun:test";
import { createLogger } from "../../src/log/logger.ts";
import { createDeliveryWorker } from "../../src/queue/worker.ts";
import { NOT_YET_DURABLE_AT } from "../../src/store/messages.ts";
import { deliveryOf, makeEnv, relayVars, seedDelivery, startRelay, waitFor } from "../delivery/helpers.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

const DAY_MS = 24 * 3600 * 1000;

test("deliveries scheduled while the clock was 30 days ahead are delivered once it is corrected", async () => {
  const relay = await startRelay();
  cleanups.push(() => relay.close());
  const t = makeEnv(relayVars(relay));
  const ahead = Date.now() + 30 * DAY_MS;
  const queued = seedDelivery(t, { createdAt: ahead });
  const deferred = seedDelivery(t, { createdAt: ahead, state: "deferred" });
  t.db.query(`UPDATE deliveries SET attempts = 3, next_attempt_at = ? WHERE message_id = ?`).run(ahead + 3600_000, deferred);
  // Not yet durable: the intake releases it, never the clock check.
  const heldBack = seedDelivery(t);
  t.db.query(`UPDATE deliveries SET next_attempt_at = ? WHERE message_id = ?`).run(NOT_YET_DURABLE_AT, heldBack);
  // A retry under an hour away is a normal schedule and waits.
  const soon = seedDelivery(t, { state: "deferred" });
  t.db.query(`UPDATE deliveries SET next_attempt_at = ? WHERE message_id = ?`).run(Date.now() + 50 * 60_000, soon);

  const lines: { msg: string; count?: number }[] = [];
  const logger = createLogger({ level: "info", format: "json", write: (s) => void lines.push(JSON.parse(s)) });
  const worker = createDeliveryWorker({ config: t.config, db: t.db, logger, pollIntervalMs: 50 });
  cleanups.push(() => worker.stop());
  worker.start();

  await waitFor(() => deliveryOf(t.db, queued).state === "delivered" && deliveryOf(t.db, deferred).state === "delivered", 10_000, "delivered");
  expect(relay.received).toHaveLength(2);
  expect(lines.find((l) => l.msg === "deliveries scheduled by a clock that has gone back since are due now")?.count).toBe(2);
  expect(deliveryOf(t.db, heldBack).state).toBe("queued");
  expect(t.db.query<{ n: number }, [string]>(`SELECT next_attempt_at AS n FROM deliveries WHERE message_id = ?`).get(heldBack)?.n).toBe(NOT_YET_DURABLE_AT);
  expect(deliveryOf(t.db, soon).state).toBe("deferred");
}, 20_000);
