/**
 * `mailgw queue drop ID` racing the running serve (or another `queue drop`) between its lookup of
 * the deliveries and its DELETE: what lands in that window is simulated by running it just before
 * the drop's transaction (dropDeliveries is drop's only transaction).
 * - the attempt under way was recorded delivered: the drop leaves it (and its attempt history)
 *   alone and says it was delivered, as a drop a moment later does; it used to delete the
 *   delivered row and print "1 delivery dropped" with no word that the relay had taken it;
 * - another drop removed it: exit 1 "no delivery … in the queue", not "0 deliveries dropped", 0.
 */
import { expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { CliError } from "../../src/errors.ts";
import { drop } from "../../src/queue/queue-admin.ts";
import { createSpoolAccess } from "../../src/queue/spool-access.ts";
import { makeEnv, seedDelivery } from "../delivery/helpers.ts";

/** Runs `meanwhile` once, right before the next transaction `db` starts. */
function beforeNextTransaction(db: Database, meanwhile: () => void): void {
  const original = db.transaction.bind(db);
  db.transaction = ((fn: Parameters<Database["transaction"]>[0]) => {
    db.transaction = original;
    meanwhile();
    return original(fn);
  }) as Database["transaction"];
}

async function dropError(p: Promise<string>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof CliError) return err.message;
    throw err;
  }
  throw new Error("drop did not fail");
}

test("drop of an in-flight delivery that is recorded delivered meanwhile leaves it and its history", async () => {
  const t = makeEnv();
  const id = seedDelivery(t, { state: "delivering" });
  beforeNextTransaction(t.db, () => {
    // The worker's finishAttempts: the relay took it.
    t.db.query(`UPDATE deliveries SET state = 'delivered', attempts = 1, delivered_at = ?1 WHERE message_id = ?2`).run(Date.now(), id);
    t.db.query(`INSERT INTO delivery_attempts (delivery_id, at, target, duration_ms, ok, reply) SELECT id, ?1, 'relay', 5, 1, '250 ok' FROM deliveries WHERE message_id = ?2`).run(Date.now(), id);
  });
  expect(await dropError(drop(t.db, createSpoolAccess(t.db, t.dataDir), id))).toBe(`delivery ${id} was delivered: nothing to drop`);
  expect(t.db.query(`SELECT state FROM deliveries WHERE message_id = ?`).all(id)).toEqual([{ state: "delivered" }]);
  expect(t.db.query(`SELECT count(*) AS n FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.message_id = ?`).get(id)).toEqual({ n: 1 });
}, 30_000);

test("two drops of one delivery at once: the second says it is no longer in the queue, exit 1", async () => {
  const t = makeEnv();
  const id = seedDelivery(t, { state: "deferred" });
  beforeNextTransaction(t.db, () => void t.db.query(`DELETE FROM deliveries WHERE message_id = ?`).run(id));
  expect(await dropError(drop(t.db, createSpoolAccess(t.db, t.dataDir), id))).toStartWith(`no delivery ${id} in the queue`);
}, 30_000);
