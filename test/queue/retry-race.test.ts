/**
 * `mailgw queue retry ID` racing the running serve (or another `queue retry`/`drop`) between its
 * lookup of the deliveries and its UPDATE: what lands in that window is simulated by running it
 * just before the retry's UPDATE. The command then answers as a retry a moment later does
 * (exit 1, the delivery's state now), not "0 deliveries queued for a new attempt" with exit 0,
 * which read as a retry that silently did nothing.
 */
import { expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { CliError } from "../../src/errors.ts";
import { retry } from "../../src/queue/queue-admin.ts";
import { makeEnv, seedDelivery } from "../delivery/helpers.ts";

/** Runs `meanwhile` once, right before the retry's UPDATE of the deliveries is prepared. */
function beforeRetryUpdate(db: Database, meanwhile: () => void): void {
  const original = db.query.bind(db);
  db.query = ((sql: string) => {
    if (sql.startsWith("UPDATE deliveries SET state = 'queued'")) {
      db.query = original;
      meanwhile();
    }
    return original(sql);
  }) as Database["query"];
}

function retryError(db: Database, ref: string): string {
  try {
    retry(db, ref, Date.now());
  } catch (err) {
    if (err instanceof CliError) return err.message;
    throw err;
  }
  throw new Error("retry did not fail");
}

test("retry of a deferred delivery that serve claims meanwhile says it is being delivered, exit 1", () => {
  const t = makeEnv();
  const id = seedDelivery(t, { state: "deferred" });
  beforeRetryUpdate(t.db, () => void t.db.query(`UPDATE deliveries SET state = 'delivering' WHERE message_id = ?`).run(id));
  expect(retryError(t.db, id)).toBe(`delivery ${id} is delivering: only failed, deferred, held deliveries can be retried`);
}, 30_000);

test("retry of a failed delivery another queue drop removes meanwhile says it is gone, exit 1", () => {
  const t = makeEnv();
  const id = seedDelivery(t, { state: "failed" });
  beforeRetryUpdate(t.db, () => void t.db.query(`DELETE FROM deliveries WHERE message_id = ?`).run(id));
  expect(retryError(t.db, id)).toStartWith(`no delivery ${id} in the queue`);
}, 30_000);

test("a retry with nothing in its way still queues the delivery", () => {
  const t = makeEnv();
  const id = seedDelivery(t, { state: "failed" });
  expect(retry(t.db, id, Date.now()).retried).toBe(1);
  expect(t.db.query(`SELECT state FROM deliveries WHERE message_id = ?`).get(id)).toEqual({ state: "queued" });
}, 30_000);
