/**
 * An attempt whose result the database refuses for a while (disk full, a write lock held past
 * busy_timeout: here a real SQLite trigger raising an error) is recorded once the database takes
 * writes again, while `serve` keeps running; it does not stay `delivering` until a restart.
 */
import { afterEach, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createLogger } from "../../src/log/logger.ts";
import { createDeliveryWorker } from "../../src/queue/worker.ts";
import { deliveryOf, makeEnv, relayVars, seedDelivery, startRelay, waitFor } from "../delivery/helpers.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

test("a result the database refuses is committed once it takes writes again; the spool file is then released", async () => {
  const relay = await startRelay();
  cleanups.push(() => relay.close());
  const t = makeEnv(relayVars(relay));
  t.db.run("CREATE TABLE refuse_results (x)");
  t.db.run("INSERT INTO refuse_results VALUES (1)");
  t.db.run(`CREATE TRIGGER refuse_attempts BEFORE INSERT ON delivery_attempts
            WHEN (SELECT count(*) FROM refuse_results) > 0 BEGIN SELECT RAISE(ABORT, 'database or disk is full (test)'); END`);
  const lines: { msg: string; id?: string; error?: string }[] = [];
  const logger = createLogger({ level: "info", format: "json", write: (s) => void lines.push(JSON.parse(s)) });
  const worker = createDeliveryWorker({ config: t.config, db: t.db, logger, pollIntervalMs: 50, recordRetryMs: 100 });
  cleanups.push(() => worker.stop());
  const id = seedDelivery(t);
  worker.start();

  await waitFor(() => lines.filter((l) => l.msg === "a delivery result could not be recorded; retrying").length >= 2, 10_000, "retries logged");
  expect(relay.received).toHaveLength(1);
  expect(deliveryOf(t.db, id).state).toBe("delivering");
  expect(lines.find((l) => l.msg.endsWith("retrying"))?.error).toContain("database or disk is full (test)");

  t.db.run("DELETE FROM refuse_results");
  await waitFor(() => deliveryOf(t.db, id).state === "delivered", 10_000, "recorded once the database takes writes");
  expect(deliveryOf(t.db, id).attempts).toBe(1);
  await waitFor(() => !existsSync(join(t.dataDir, "spool", `${id}.eml`)), 5_000, "spool released");
  expect(relay.received).toHaveLength(1); // recorded, not delivered again
  expect(lines.filter((l) => l.msg === "delivered" && l.id === id)).toHaveLength(1);
}, 30_000);

test("stopping while a result cannot be recorded ends promptly; the row stays delivering for the next start", async () => {
  const relay = await startRelay();
  cleanups.push(() => relay.close());
  const t = makeEnv(relayVars(relay));
  t.db.run(`CREATE TRIGGER refuse_attempts BEFORE INSERT ON delivery_attempts BEGIN SELECT RAISE(ABORT, 'disk I/O error (test)'); END`);
  const lines: { msg: string }[] = [];
  const logger = createLogger({ level: "info", format: "json", write: (s) => void lines.push(JSON.parse(s)) });
  const worker = createDeliveryWorker({ config: t.config, db: t.db, logger, pollIntervalMs: 50, recordRetryMs: 60_000 });
  const id = seedDelivery(t);
  worker.start();
  await waitFor(() => lines.some((l) => l.msg === "a delivery result could not be recorded; retrying"), 10_000, "retry logged");
  const started = Date.now();
  await worker.stop();
  expect(Date.now() - started).toBeLessThan(2_000);
  expect(deliveryOf(t.db, id).state).toBe("delivering");
}, 30_000);

test("a delivered message's spool file is removed only once the WAL holding 'delivered' is durable", async () => {
  const relay = await startRelay();
  cleanups.push(() => relay.close());
  const t = makeEnv(relayVars(relay));
  // The worker's durability step, held by the test: a power cut before it ends would lose the
  // 'delivered' row, and with the file gone too the message would be lost, not sent twice.
  let release: () => void = () => undefined;
  const synced = new Promise<void>((resolve) => (release = resolve));
  const worker = createDeliveryWorker({ config: t.config, db: t.db, logger: createLogger({ level: "error", format: "json", write: () => undefined }), pollIntervalMs: 50, durable: () => synced });
  cleanups.push(() => worker.stop());
  const id = seedDelivery(t);
  const spoolFile = join(t.dataDir, "spool", `${id}.eml`);
  worker.start();
  await waitFor(() => deliveryOf(t.db, id).state === "delivered", 10_000, "delivered");
  await Bun.sleep(300);
  expect(existsSync(spoolFile)).toBe(true);
  release();
  await waitFor(() => !existsSync(spoolFile), 5_000, "spool released after the sync");
}, 30_000);
