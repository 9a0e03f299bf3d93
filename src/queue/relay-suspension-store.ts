/**
 * The relay suspension's rows (relay-suspension.ts): its meta row (`relay_suspension`), which
 * /healthz, /stats, `mailgw queue list` and the next start read and `queue retry` or SIGHUP
 * delete, and the forwards it defers and releases (found again by RELAY_SUSPENDED_PREFIX in
 * their last error). Separate from the gate: the worker's gate, `queue retry`, SIGHUP and the
 * status pages share this SQL, and only the gate keeps a suspension in memory.
 *
 * Trusts: the schema (meta, deliveries). Failure: database errors are thrown to the caller.
 */
import type { Database } from "bun:sqlite";
import { commitWithShortWaits, withoutFsync } from "../spool/wal-sync.ts";
import { bumpCounterBatch } from "../store/counters.ts";
import { NOT_YET_DURABLE_AT } from "../store/messages.ts";
import { gaveUpReason } from "./retry.ts";

/** Starts the last error of every forward waiting for a suspended relay (and finds them again). */
export const RELAY_SUSPENDED_PREFIX = "relay suspended: ";
/**
 * What ends a suspension, for the log, /stats and `queue list`. `queue retry` only lifts it: a
 * fixed password in .env took a second failed login that way (Gmail and SES lock accounts after
 * a few) until SIGHUP read it, so the way to load changed settings is named with it.
 */
export const RELAY_FIX_HINT =
  "once the relay works again, mailgw queue retry --all tries it at once; a changed RELAY_* setting (a fixed password) " +
  "is read on SIGHUP from .env or --env-file, or at a restart (systemd's env file): queue retry keeps the settings serve has";
const META_KEY = "relay_suspension";

export interface RelaySuspension {
  /** The relay's `host:port`. */
  relay: string;
  /** Unix ms of the failure that suspended it. */
  since: number;
  /** Unix ms when the next probe may go. */
  until: number;
  /** The latest failure, as an attempt reports it. */
  reason: string;
  /** Failed tries in a row, the first included: the backoff's exponent. */
  failures: number;
}

/** The last error of a forward deferred by the suspension. */
export function suspendedError(s: Pick<RelaySuspension, "reason">): string {
  return `${RELAY_SUSPENDED_PREFIX}${s.reason}`;
}

/** The suspension on record (null: none, or a row this version cannot read). */
export function readSuspension(db: Database): RelaySuspension | null {
  const row = db.query<{ value: string }, [string]>(`SELECT value FROM meta WHERE key = ?`).get(META_KEY);
  if (!row) return null;
  try {
    const v = JSON.parse(row.value) as Partial<RelaySuspension>;
    const ok = typeof v.relay === "string" && typeof v.since === "number" && typeof v.until === "number" && typeof v.reason === "string" && typeof v.failures === "number";
    return ok ? (v as RelaySuspension) : null;
  } catch {
    return null;
  }
}

/** Ends the suspension on record (`queue retry`, SIGHUP); returns it, null when there was none. */
export function liftSuspension(db: Database): RelaySuspension | null {
  const s = readSuspension(db);
  deleteSuspension(db);
  return s;
}

/** Writes the suspension as it now stands (what the status pages and the next start read). */
export function recordSuspension(db: Database, s: RelaySuspension): void {
  db.query(`INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)`).run(META_KEY, JSON.stringify(s));
}

/** Whether a suspension is on record: `queue retry` or SIGHUP deleting it is how they lift it. */
export function suspensionRecorded(db: Database): boolean {
  return db.query(`SELECT 1 FROM meta WHERE key = ?`).get(META_KEY) !== null;
}

/** Deletes the suspension on record. */
export function deleteSuspension(db: Database): void {
  db.query(`DELETE FROM meta WHERE key = ?`).run(META_KEY);
}

/**
 * When a forward waits for the suspension's end: then, plus a millisecond per attempt it has had,
 * so the forward tried least is the next probe (not the same message each time), and its expiry
 * at the latest. The relay's return makes it due at once anyway (resumeForwards).
 */
export function waitUntil(s: RelaySuspension, attempts: number, expiresAt: number): number {
  return Math.min(s.until + attempts, expiresAt);
}

export interface FailedForward {
  id: number;
  messageId: string;
  target: string;
  rule: string | null;
  category: string;
}

const DUE_FORWARDS = `kind = 'forward' AND state IN ('queued', 'deferred') AND next_attempt_at <= ?1`;

/**
 * Forwards due while the relay is suspended: deferred to its end with its error, no attempt
 * counted; those past QUEUE_MAX_AGE_HOURS (from their queueing or last `queue retry`) failed, as
 * the attempt they would have had would have failed them. Read first: no write lock when none is due.
 */
export function deferDueForwards(db: Database, s: RelaySuspension, now: number, maxAgeHours: number): FailedForward[] {
  if (db.query(`SELECT 1 FROM deliveries WHERE ${DUE_FORWARDS} LIMIT 1`).get(now) === null) return [];
  const maxAgeMs = maxAgeHours * 3600 * 1000;
  const error = suspendedError(s);
  const expiresAt = `coalesce(retry_from, created_at) + ?3`;
  return withoutFsync(db, () => commitWithShortWaits(db, () => {
    const failed = db
      .query<FailedForward, [number, string, number]>(
        `UPDATE deliveries SET state = 'failed', last_error = ?2, updated_at = ?1 WHERE ${DUE_FORWARDS} AND ${expiresAt} <= ?1
         RETURNING id, message_id AS messageId, target, rule, category`,
      )
      .all(now, gaveUpReason(maxAgeHours, error), maxAgeMs);
    // min(): as waitUntil.
    db.query(`UPDATE deliveries SET state = 'deferred', last_error = ?2, updated_at = ?1, next_attempt_at = min(?4 + attempts, ${expiresAt}) WHERE ${DUE_FORWARDS}`)
      .run(now, error, maxAgeMs, s.until);
    bumpCounterBatch(db, failed.map((f) => ({ at: now, metric: "failed:forward" as const, rule: f.rule, category: f.category })));
    return failed;
  }));
}

/**
 * Forwards deferred by a suspension become due now (the relay is back, or the suspension was
 * lifted), the least tried first as in waitUntil; returns how many waited for it. Those due
 * already (the probe goes at the suspension's end, when they all are) count too: the log's
 * `forwards_due` is the backlog released, not just the rows whose time moved.
 */
export function resumeForwards(db: Database, now: number): number {
  return db
    .query(
      `UPDATE deliveries SET next_attempt_at = min(next_attempt_at, ?1 + attempts), updated_at = ?1
       WHERE kind = 'forward' AND state = 'deferred' AND next_attempt_at <> ${NOT_YET_DURABLE_AT}
         AND substr(last_error, 1, ?3) = ?2`,
    )
    .run(now, RELAY_SUSPENDED_PREFIX, RELAY_SUSPENDED_PREFIX.length).changes;
}
