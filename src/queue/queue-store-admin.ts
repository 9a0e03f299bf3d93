/**
 * Queue SQL for `mailgw queue list|retry|drop` (queue-admin.ts), which may run while `serve`
 * delivers from the same database: listing and counting deliveries, making them due now, and
 * dropping them. Apart from the worker's SQL (queue-store.ts, which re-exports these) because
 * the worker never runs it.
 *
 * Trusts: the schema of store/migrations.ts. Failure: SQLite errors are thrown to the caller.
 */
import type { Database } from "bun:sqlite";
import { NOT_YET_DURABLE_AT } from "../store/messages.ts";
import type { DeliveryKind, DeliveryState } from "../types.ts";

export interface QueueEntry {
  id: number;
  messageId: string;
  kind: DeliveryKind;
  target: string;
  state: DeliveryState;
  attempts: number;
  createdAt: number;
  nextAttemptAt: number;
  lastError: string | null;
  rule: string | null;
  category: string;
}

/** States `queue list` shows by default: everything not delivered. */
export const PENDING_STATES: readonly DeliveryState[] = ["queued", "deferred", "held", "delivering", "failed"];

export function listQueue(db: Database, states: readonly DeliveryState[], limit: number): QueueEntry[] {
  return db
    .query<QueueEntry, [string, number]>(
      `SELECT id, message_id AS messageId, kind, target, state, attempts, created_at AS createdAt,
              next_attempt_at AS nextAttemptAt, last_error AS lastError, rule, category
       FROM deliveries WHERE state IN (SELECT value FROM json_each(?)) ORDER BY created_at, id LIMIT ?`,
    )
    .all(JSON.stringify(states), limit);
}

/** How many deliveries are in these states (what `queue list` shows at most LIST_LIMIT of). */
export function countQueue(db: Database, states: readonly DeliveryState[]): number {
  return db
    .query<{ n: number }, [string]>(`SELECT COUNT(*) AS n FROM deliveries WHERE state IN (SELECT value FROM json_each(?))`)
    .get(JSON.stringify(states))?.n ?? 0;
}

/** Deliveries an ID names: a delivery number, or a message id (all of its deliveries). */
export function findDeliveries(db: Database, ref: string): QueueEntry[] {
  const byNumber = /^\d+$/.test(ref);
  return db
    .query<QueueEntry, [string]>(
      `SELECT id, message_id AS messageId, kind, target, state, attempts, created_at AS createdAt,
              next_attempt_at AS nextAttemptAt, last_error AS lastError, rule, category
       FROM deliveries WHERE ${byNumber ? "id = CAST(? AS INTEGER)" : "message_id = ?"} ORDER BY id`,
    )
    .all(ref);
}

/** States `queue retry` moves to queued. */
export const RETRYABLE_STATES: readonly DeliveryState[] = ["failed", "deferred", "held"];

/** Not a delivery the intake holds back until its message is durable (released then, not retried). */
const DURABLE = `next_attempt_at <> ${NOT_YET_DURABLE_AT}`;

/** A fresh start: due now, and the age limit and backoff count from now (migration 4). */
const RETRY_SET = `state = 'queued', next_attempt_at = ?1, updated_at = ?1, retry_from = ?1, retry_attempts = attempts`;

/** Makes the deliveries due now; returns how many changed. `ids` null = all retryable. */
export function retryNow(db: Database, ids: readonly number[] | null, now: number): number {
  const states = JSON.stringify(RETRYABLE_STATES);
  if (ids === null) {
    return db
      .query(`UPDATE deliveries SET ${RETRY_SET} WHERE state IN (SELECT value FROM json_each(?2)) AND ${DURABLE}`)
      .run(now, states).changes;
  }
  return db
    .query(
      `UPDATE deliveries SET ${RETRY_SET}
       WHERE id IN (SELECT value FROM json_each(?3)) AND state IN (SELECT value FROM json_each(?2)) AND ${DURABLE}`,
    )
    .run(now, states, JSON.stringify(ids)).changes;
}

/**
 * Every `failed` delivery, in one transaction (`queue drop --failed`): only rows still failed
 * when it runs (a `queue retry` just before made them queued again). Returns their message ids.
 */
export function dropFailedDeliveries(db: Database): string[] {
  return db
    .transaction(() => {
      db.query(`DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE state = 'failed')`).run();
      return db.query<{ messageId: string }, []>(`DELETE FROM deliveries WHERE state = 'failed' RETURNING message_id AS messageId`).all().map((r) => r.messageId);
    })
    .immediate();
}

/**
 * Removes deliveries and their attempts (`queue drop`); returns how many were removed.
 * Deletes the deliveries; `inFlight`: how many of them the worker was attempting at that moment
 * (state read by the DELETE itself, so a claim between the caller's lookup and now counts too).
 * A delivery the worker recorded as delivered since the caller's lookup stays, with its attempts:
 * the lookup saw it `delivering`, and deleting it reported "dropped" for a message the relay
 * had just taken, and erased its history.
 */
export function dropDeliveries(db: Database, ids: readonly number[]): { dropped: number; inFlight: number } {
  const list = JSON.stringify(ids);
  const undelivered = `SELECT id FROM deliveries WHERE id IN (SELECT value FROM json_each(?)) AND state <> 'delivered'`;
  return db
    .transaction(() => {
      db.query(`DELETE FROM delivery_attempts WHERE delivery_id IN (${undelivered})`).run(list);
      const states = db.query<{ state: string }, [string]>(`DELETE FROM deliveries WHERE id IN (${undelivered}) RETURNING state`).all(list);
      return { dropped: states.length, inFlight: states.filter((r) => r.state === "delivering").length };
    })
    .immediate();
}
