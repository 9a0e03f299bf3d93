/**
 * serve started without a relay over a queue that has forwards from a run that had one
 * (RELAY_SMTP_HOST removed, then a restart): every waiting forward is held at once, including
 * one deferred to later, so `queue list` says why it waits and the log says how many; a
 * webhook delivery is not a forward and keeps its schedule.
 */
import { afterEach, expect, test } from "bun:test";
import { createLogger } from "../../src/log/logger.ts";
import { createDeliveryWorker } from "../../src/queue/worker.ts";
import { deliveryOf, makeEnv, seedDelivery, waitFor } from "../delivery/helpers.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

test("without a relay, queued and deferred forwards are held at the first claim, with one warning; a deferred webhook is not", async () => {
  const t = makeEnv();
  const queued = seedDelivery(t);
  const deferred = seedDelivery(t, { state: "deferred" });
  const later = Date.now() + 3600_000;
  t.db.query(`UPDATE deliveries SET attempts = 2, next_attempt_at = ? WHERE message_id = ?`).run(later, deferred);
  const hook = seedDelivery(t, { kind: "webhook", state: "deferred" });
  t.db.query(`UPDATE deliveries SET attempts = 1, next_attempt_at = ? WHERE message_id = ?`).run(later, hook);

  const lines: { msg: string; level: string; count?: number }[] = [];
  const logger = createLogger({ level: "info", format: "json", write: (s) => void lines.push(JSON.parse(s)) });
  const worker = createDeliveryWorker({ config: t.config, db: t.db, logger, pollIntervalMs: 50 });
  cleanups.push(() => worker.stop());
  worker.start();

  await waitFor(() => deliveryOf(t.db, queued).state === "held" && deliveryOf(t.db, deferred).state === "held", 5000, "held");
  await Bun.sleep(200);
  expect(lines.filter((l) => l.msg.startsWith("forwards held"))).toEqual([
    expect.objectContaining({ level: "warn", msg: "forwards held: no relay configured (set RELAY_SMTP_HOST)", count: 2 }),
  ]);
  expect(deliveryOf(t.db, hook).state).toBe("deferred");
  expect(t.db.query<{ n: number }, [string]>(`SELECT next_attempt_at AS n FROM deliveries WHERE message_id = ?`).get(hook)?.n).toBe(later);
  // Held, not attempted: no attempt was counted for either forward.
  expect([deliveryOf(t.db, queued).attempts, deliveryOf(t.db, deferred).attempts]).toEqual([0, 2]);
}, 20_000);
