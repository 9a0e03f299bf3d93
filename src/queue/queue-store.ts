/**
 * Queue SQL: every read and write of `deliveries` / `delivery_attempts` made by the worker
 * and by `mailgw queue`. State machine (SPEC §5):
 *   queued|deferred → delivering → delivered | deferred | failed;  held → queued (relay set);
 *   failed|deferred|held → queued (`queue retry`);  delivering → queued|deferred|failed (start
 *   after a crash: interrupted.ts).
 * A forward the relay took for only some recipients is delivered; the recipients it refused
 * get a delivery of their own, created in the same transaction: failed (5xx) or deferred (4xx).
 * Each transition is one UPDATE guarded by the state it leaves, so the worker and the CLI
 * (another process, same WAL database) never overwrite each other's change.
 * The claim's SQL is in queue-store-claim.ts, that of `mailgw queue list|retry|drop` in
 * queue-store-admin.ts; both re-exported here.
 * Trusts: the schema of store/migrations.ts. Failure: SQLite errors are thrown to the caller.
 */
import type { Database } from "bun:sqlite";
import { commitWithShortWaits, withoutFsync } from "../spool/wal-sync.ts";
import { bumpCounterBatch, type CounterIncrement } from "../store/counters.ts";
import { durationIncrements } from "../store/delivery-durations.ts";
import { NOT_YET_DURABLE_AT, spoolStillNeeded } from "../store/messages.ts";
import type { ClaimedDelivery } from "./queue-store-claim.ts";
import type { NextStep, RefusedRecipients } from "./retry.ts";
import { keepTakenRecipients, recordDeferred, recordRefused } from "./split-deliveries.ts";

// The claim (claim-loop.ts).
export { claimDue, type ClaimedDelivery, type ClaimLimits, dueCandidates, type LargeLimits } from "./queue-store-claim.ts";
// For `mailgw queue` (queue-admin.ts).
export {
  countQueue, dropDeliveries, dropFailedDeliveries, findDeliveries, listQueue, PENDING_STATES, type QueueEntry, RETRYABLE_STATES, retryNow,
} from "./queue-store-admin.ts";

export interface AttemptRecord {
  delivery: ClaimedDelivery;
  at: number;
  durationMs: number;
  /** What was tried, for the attempts table and logs (relay host + recipients, or URL). */
  target: string;
  ok: boolean;
  /** Reply on success, error otherwise. */
  reply: string;
  step: NextStep;
  /** Recipients the relay refused while delivering to the others: recorded as a failed delivery. */
  refused?: RefusedRecipients;
  /** Recipients the relay deferred (4xx) while delivering to the others: a delivery of their own. */
  deferred?: DeferredRecipients;
}

/** Temporarily refused recipients with what their own delivery becomes (see recordDeferred). */
export interface DeferredRecipients extends RefusedRecipients {
  /** The retry schedule's step for them: deferred with the next try, or failed once too old. */
  step: NextStep;
}

/** What recording one attempt found. */
export interface FinishResult {
  /** false: nothing recorded, the delivery is no longer `delivering` (`mailgw queue drop` meanwhile). */
  recorded: boolean;
  /** The message's spool file is needed by nothing any more (see spoolStillNeeded) and may go. */
  spoolReleasable: boolean;
  /** Number of the delivery created for the record's `deferred` recipients; null when none. */
  deferredDelivery: number | null;
  /** Number of the failed delivery created for the record's `refused` recipients; null when none. */
  refusedDelivery: number | null;
}

/**
 * Records attempts and the states they lead to, with their counters (the duration histogram's
 * included: it must outlive the attempt rows, see delivery-durations.ts), in ONE transaction
 * (group commit: every attempt that finished meanwhile). Counters are summed per
 * (day, metric, rule, category) first, so a group bumps each counter row once. Whether a
 * final delivery's spool file may go is decided inside the same transaction.
 * Committed without an fsync (see withoutFsync): the caller must wait for a WAL fsync before
 * it unlinks a releasable spool file (a lost "delivered" only means a redelivery).
 */
export function finishAttempts(db: Database, records: readonly AttemptRecord[]): FinishResult[] {
  return withoutFsync(db, () => commitWithShortWaits(db, () => {
    const increments: CounterIncrement[] = [];
    const results = records.map((r): FinishResult => {
      if (!recordAttempt(db, r)) return { recorded: false, spoolReleasable: false, deferredDelivery: null, refusedDelivery: null };
      increments.push({ at: r.at, metric: `${r.step.state}:${r.delivery.kind}`, rule: r.delivery.rule, category: r.delivery.category });
      increments.push(...durationIncrements(r.at, r.delivery.kind, r.durationMs));
      const refusedDelivery = r.refused ? recordRefused(db, r, r.refused) : null;
      if (r.refused) {
        increments.push({ at: r.at, metric: `failed:${r.delivery.kind}`, rule: r.delivery.rule, category: r.delivery.category });
      }
      const deferredDelivery = r.deferred ? recordDeferred(db, r, r.deferred) : null;
      if (r.deferred) {
        increments.push({ at: r.at, metric: `${r.deferred.step.state}:${r.delivery.kind}`, rule: r.delivery.rule, category: r.delivery.category });
      }
      if (r.refused || r.deferred) keepTakenRecipients(db, r, [...(r.refused?.recipients ?? []), ...(r.deferred?.recipients ?? [])]);
      // After the split rows: a deferred (or failed) split keeps the spool file of a delivered forward.
      const final = r.step.state !== "deferred";
      return { recorded: true, spoolReleasable: final && !spoolStillNeeded(db, r.delivery.messageId), deferredDelivery, refusedDelivery };
    });
    bumpCounterBatch(db, increments);
    return results;
  }));
}

function recordAttempt(db: Database, r: AttemptRecord): boolean {
  const { delivery: d, step } = r;
  const end = r.at + r.durationMs;
  const changed = db
    .query(
      `UPDATE deliveries SET state = ?, attempts = attempts + 1, next_attempt_at = ?, updated_at = ?,
         last_error = ?, delivered_at = ? WHERE id = ? AND state = 'delivering'`,
    )
    .run(step.state, step.nextAttemptAt, end, r.ok ? null : (step.reason ?? r.reply), step.state === "delivered" ? end : null, d.id)
    .changes;
  if (changed !== 1) return false;
  db.query(`INSERT INTO delivery_attempts (delivery_id, at, target, duration_ms, ok, reply) VALUES (?, ?, ?, ?, ?, ?)`)
    .run(d.id, r.at, r.target, r.durationMs, r.ok ? 1 : 0, r.reply);
  return true;
}

/** A claimed forward found with no relay configured goes (back) to `held`. */
export function holdClaimed(db: Database, id: number, now: number): void {
  db.query(`UPDATE deliveries SET state = 'held', updated_at = ? WHERE id = ? AND state = 'delivering'`).run(now, id);
}

/** Without a relay: queued/deferred forwards become `held` (e.g. after `queue retry`). */
export function holdForwards(db: Database, now: number): number {
  return db
    .query(`UPDATE deliveries SET state = 'held', updated_at = ? WHERE kind = 'forward' AND state IN ('queued', 'deferred')`)
    .run(now).changes;
}

/**
 * With a relay: held forwards become due now, except one whose message is not yet durable: it
 * is queued but stays held back until the intake releases it (else the worker could look for
 * a spool file not written yet, and fail a message its client got 250 for). QUEUE_MAX_AGE_HOURS
 * counts from the release, as from a `queue retry`: it bounds the retries of a relay that fails,
 * not the wait for a relay to be configured (a forward held for days must not fail at its first
 * 4xx).
 */
export function releaseHeld(db: Database, now: number): number {
  return db
    .query(
      `UPDATE deliveries SET state = 'queued', updated_at = ?1, retry_from = ?1, retry_attempts = attempts,
         next_attempt_at = CASE WHEN next_attempt_at = ${NOT_YET_DURABLE_AT} THEN next_attempt_at ELSE ?1 END
       WHERE state = 'held'`,
    )
    .run(now).changes;
}

/** Whether any delivery is held (a read: no write lock unless there is something to release). */
export function anyHeld(db: Database): boolean {
  return db.query(`SELECT 1 FROM deliveries WHERE state = 'held' LIMIT 1`).get() !== null;
}

/**
 * Deliveries due more than `aheadMs` after `now`, which no schedule does (a retry waits at most
 * RETRY_CAP_MS): their time came from a clock that has gone back since (set ahead, then corrected
 * by NTP). Due now, else they would wait for the clock to catch up, days or years. Read first:
 * no write lock unless one is found. Held-back intake rows (NOT_YET_DURABLE_AT) are not touched.
 */
export function rescheduleFromFuture(db: Database, now: number, aheadMs: number): number {
  const where = `state IN ('queued', 'deferred') AND next_attempt_at > ?1 AND next_attempt_at < ${NOT_YET_DURABLE_AT}`;
  if (db.query(`SELECT 1 FROM deliveries WHERE ${where} LIMIT 1`).get(now + aheadMs) === null) return 0;
  return db.query(`UPDATE deliveries SET next_attempt_at = ?2, updated_at = ?2 WHERE ${where}`).run(now + aheadMs, now).changes;
}

/**
 * Deliveries whose QUEUE_MAX_AGE_HOURS counts from more than `aheadMs` after `now`: queued (or
 * retried) by a clock that has gone back since. Their limit counts from now (retry_from), else a
 * message taken while the clock was a month ahead was retried for a month and its limit on top,
 * not given up at the limit. Read first: no write lock unless one is found.
 */
export function ageFromFuture(db: Database, now: number, aheadMs: number): number {
  const where = `state IN ('queued', 'deferred') AND coalesce(retry_from, created_at) > ?1`;
  if (db.query(`SELECT 1 FROM deliveries WHERE ${where} LIMIT 1`).get(now + aheadMs) === null) return 0;
  return db.query(`UPDATE deliveries SET retry_from = ?2, updated_at = ?2 WHERE ${where}`).run(now + aheadMs, now).changes;
}
