/**
 * The delivery worker in its own thread (src/queue/threaded-worker.ts): delivers through a real
 * relay with its own SQLite connection, forwards its log lines to the main logger (one per
 * attempt, with the message id), releases held forwards when a relay is configured, stops
 * gracefully, and is replaced after a crash with the attempts it left `delivering` queued
 * again and delivered (at-least-once). A thread that cannot start falls back to the main thread.
 */
import { afterEach, expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createLogger, type Logger } from "../../src/log/logger.ts";
import { createThreadedDeliveryWorker } from "../../src/queue/threaded-worker.ts";
import { deliveryOf, makeEnv, relayVars, seedDelivery, startRelay, waitFor } from "../delivery/helpers.ts";

const CRASHABLE = new URL("./crashable-delivery-thread.ts", import.meta.url).href;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

function capture(): { logger: Logger; lines: () => { msg: string; id?: string; level: string }[] } {
  const out: string[] = [];
  const logger = createLogger({ level: "info", format: "json", write: (s) => void out.push(s) });
  return { logger, lines: () => out.map((l) => JSON.parse(l) as { msg: string; id?: string; level: string }) };
}

test("delivers from its own thread; one 'delivered' line per message, with its id", async () => {
  const relay = await startRelay();
  cleanups.push(() => relay.close());
  const t = makeEnv(relayVars(relay));
  const log = capture();
  const worker = createThreadedDeliveryWorker({ config: t.config, db: t.db, logger: log.logger });
  cleanups.push(() => worker.stop());
  const ids = Array.from({ length: 5 }, () => seedDelivery(t));
  await worker.start();
  expect(worker.mode()).toBe("thread");
  worker.wake();
  await waitFor(() => ids.every((id) => deliveryOf(t.db, id).state === "delivered"), 15_000, "delivered");
  await waitFor(() => ids.every((id) => !existsSync(join(t.dataDir, "spool", `${id}.eml`))), 5_000, "spool released");
  expect(relay.received).toHaveLength(5);
  await waitFor(() => log.lines().filter((l) => l.msg === "delivered").length === 5, 5_000, "log lines");
  expect(log.lines().filter((l) => l.msg === "delivered").map((l) => l.id).sort()).toEqual([...ids].sort());
  expect(log.lines().some((l) => l.msg === "deliveries run in their own thread")).toBe(true);
  await worker.stop();
  expect(worker.inFlight()).toBe(0);
}, 30_000);

test("held forwards are released to a relay configured later (reloadRelay)", async () => {
  const relay = await startRelay();
  cleanups.push(() => relay.close());
  const t = makeEnv();
  const worker = createThreadedDeliveryWorker({ config: t.config, db: t.db, logger: capture().logger });
  cleanups.push(() => worker.stop());
  const id = seedDelivery(t);
  await worker.start();
  await waitFor(() => deliveryOf(t.db, id).state === "held", 10_000, "held");
  const withRelay = makeEnv(relayVars(relay)).config.relay;
  worker.reloadRelay(withRelay);
  await waitFor(() => deliveryOf(t.db, id).state === "delivered", 15_000, "delivered after reload");
  expect(relay.received).toHaveLength(1);
}, 30_000);

test("a forward held longer than QUEUE_MAX_AGE_HOURS is retried after a 4xx once a relay is set, not failed", async () => {
  const relay = await startRelay();
  cleanups.push(() => relay.close());
  relay.tempFailures = 1;
  const t = makeEnv({ QUEUE_MAX_AGE_HOURS: "1", QUEUE_RETRY_BASE_SECONDS: "0.05" });
  const worker = createThreadedDeliveryWorker({ config: t.config, db: t.db, logger: capture().logger });
  cleanups.push(() => worker.stop());
  const id = seedDelivery(t, { createdAt: Date.now() - 5 * 3600_000 }); // held for 5 hours
  await worker.start();
  await waitFor(() => deliveryOf(t.db, id).state === "held", 10_000, "held");
  worker.reloadRelay(makeEnv(relayVars(relay)).config.relay);
  await waitFor(() => deliveryOf(t.db, id).state === "delivered", 15_000, "delivered after one 451");
  expect(deliveryOf(t.db, id).attempts).toBe(2);
  expect(relay.received).toHaveLength(1);
}, 30_000);

test("a crashed thread is replaced; the attempts it left delivering are delivered", async () => {
  const relay = await startRelay();
  cleanups.push(() => relay.close());
  const t = makeEnv(relayVars(relay));
  relay.mode = "stall"; // attempts are in flight (rows `delivering`) when the thread dies
  writeFileSync(join(t.dataDir, "crash-thread"), "400");
  const log = capture();
  const worker = createThreadedDeliveryWorker({ config: t.config, db: t.db, logger: log.logger, specifier: CRASHABLE, restartDelayMs: 300 });
  cleanups.push(() => worker.stop());
  const ids = Array.from({ length: 3 }, () => seedDelivery(t));
  await worker.start();
  await waitFor(() => ids.every((id) => deliveryOf(t.db, id).state === "delivering"), 10_000, "delivering");
  await waitFor(() => log.lines().some((l) => l.msg === "delivery thread crashed; starting a new one"), 10_000, "crash logged");
  relay.mode = "ok";
  await waitFor(() => worker.restarts() === 1, 10_000, "restarted");
  await waitFor(() => ids.every((id) => deliveryOf(t.db, id).state === "delivered"), 20_000, "delivered after restart");
  expect(log.lines().some((l) => l.msg === "deliveries interrupted by a stop or crash are queued again")).toBe(true);
  expect(worker.mode()).toBe("thread");
}, 45_000);

/** A threaded worker on the crashable thread, once that thread has crashed (its replacement pending). */
async function workerWhoseThreadCrashed(t: ReturnType<typeof makeEnv>) {
  writeFileSync(join(t.dataDir, "crash-thread"), "100");
  const log = capture();
  const worker = createThreadedDeliveryWorker({ config: t.config, db: t.db, logger: log.logger, specifier: CRASHABLE, restartDelayMs: 300 });
  cleanups.push(() => worker.stop());
  await worker.start();
  await waitFor(() => log.lines().some((l) => l.msg === "delivery thread crashed; starting a new one"), 10_000, "crash logged");
  return worker;
}

test("a relay reload while a crashed thread's replacement starts reaches that thread", async () => {
  const [oldRelay, newRelay] = [await startRelay(), await startRelay()];
  cleanups.push(() => oldRelay.close(), () => newRelay.close());
  const t = makeEnv(relayVars(oldRelay));
  const worker = await workerWhoseThreadCrashed(t);
  const slowStart = join(t.dataDir, "slow-start");
  writeFileSync(slowStart, "1500");
  // The replacement has its init (with the old relay) and is starting: not attached yet.
  await waitFor(() => !existsSync(slowStart), 10_000, "replacement initialised");
  expect(worker.restarts()).toBe(0);
  worker.reloadRelay(makeEnv(relayVars(newRelay)).config.relay);
  await waitFor(() => worker.restarts() === 1, 10_000, "restarted");
  const id = seedDelivery(t);
  worker.wake();
  await waitFor(() => deliveryOf(t.db, id).state === "delivered", 15_000, "delivered");
  expect(newRelay.received).toHaveLength(1);
  expect(oldRelay.received).toHaveLength(0);
}, 45_000);

test("a stop while a crashed thread's replacement starts lets that thread's attempts finish", async () => {
  const relay = await startRelay();
  cleanups.push(() => relay.close());
  relay.dataReplyDelayMs = 1000; // the relay has the message well before it answers 250
  const t = makeEnv(relayVars(relay));
  const worker = await workerWhoseThreadCrashed(t);
  writeFileSync(join(t.dataDir, "slow-start"), "1000");
  const id = seedDelivery(t);
  // The replacement has claimed the delivery at its start; serve stops before it is attached.
  await waitFor(() => deliveryOf(t.db, id).state === "delivering", 10_000, "claimed by the replacement");
  expect(worker.restarts()).toBe(0);
  await worker.stop();
  expect(deliveryOf(t.db, id).state).toBe("delivered");
  expect(relay.received).toHaveLength(1);
}, 45_000);

test("a thread that cannot start falls back to the main thread and still delivers", async () => {
  const relay = await startRelay();
  cleanups.push(() => relay.close());
  const t = makeEnv(relayVars(relay));
  const log = capture();
  const missing = new URL("./no-such-thread.ts", import.meta.url).href;
  const worker = createThreadedDeliveryWorker({ config: t.config, db: t.db, logger: log.logger, specifier: missing });
  cleanups.push(() => worker.stop());
  const id = seedDelivery(t);
  await worker.start();
  expect(worker.mode()).toBe("main");
  expect(log.lines().some((l) => l.msg === "delivery thread unavailable: delivering on the main thread")).toBe(true);
  await waitFor(() => deliveryOf(t.db, id).state === "delivered", 15_000, "delivered");
}, 30_000);
