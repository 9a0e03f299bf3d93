/**
 * A forward the relay took for only some recipients (queue-store.ts finishAttempts): the
 * refused and the deferred recipients each become a delivery of their own, and the attempted
 * delivery keeps only the recipients that took it. Runs inside finishAttempts' transaction.
 */
import type { Database } from "bun:sqlite";
import { asciiAddress } from "../act/relay-envelope.ts";
import type { DeliveryState } from "../types.ts";
import type { AttemptRecord, DeferredRecipients } from "./queue-store.ts";
import type { RefusedRecipients } from "./retry.ts";

/**
 * The refused recipients become a delivery of their own, `failed` with the relay's reply: shown
 * by `queue list` and the stats page, retried with `queue retry` (for them only), and keeping
 * the spool file while it waits (spoolStillNeeded counts failed deliveries). Returns its number.
 */
export function recordRefused(db: Database, r: AttemptRecord, refused: RefusedRecipients): number {
  const end = r.at + r.durationMs;
  // The attempt count goes on from the delivery it split from, as for deferred ones and the log.
  return insertSplit(db, r, refused.recipients, {
    state: "failed", attempts: r.delivery.attempts + 1, nextAttemptAt: end, lastError: refused.error, retryFrom: null, retryAttempts: 0,
  });
}

/**
 * The deferred recipients become a delivery of their own (same message, kind, rule, category),
 * so only they are retried and the recipients that took the message get no second copy. It
 * continues the delivery it split from rather than starting afresh: same created_at and age
 * origin (QUEUE_MAX_AGE_HOURS still bounds it) and the same attempt count (the backoff goes on
 * doubling). The attempt itself is recorded once, on the delivery that made it (one relay
 * transaction, one row in the latency histogram). Returns the new delivery's number.
 */
export function recordDeferred(db: Database, r: AttemptRecord, deferred: DeferredRecipients): number {
  const d = r.delivery;
  return insertSplit(db, r, deferred.recipients, {
    state: deferred.step.state, attempts: d.attempts + 1, nextAttemptAt: deferred.step.nextAttemptAt,
    lastError: deferred.step.reason ?? deferred.error, retryFrom: d.ageFrom, retryAttempts: d.retryAttempts,
  });
}

/**
 * The delivery that was taken for some recipients keeps only those as its target: `queue list`
 * showed it `delivered` to every address, refused ones included, beside their own failed or
 * deferred rows. Addresses compare in their ASCII form (the relay names an IDN recipient by
 * the A-label it was sent as, relay-envelope.ts).
 */
export function keepTakenRecipients(db: Database, r: AttemptRecord, split: readonly string[]): void {
  let all: unknown;
  try {
    all = JSON.parse(r.delivery.target);
  } catch {
    return;
  }
  if (!Array.isArray(all)) return;
  const kept = takenRecipients((all as unknown[]).map(String), split);
  if (kept.length === 0 || kept.length === all.length) return;
  db.query(`UPDATE deliveries SET target = ? WHERE id = ?`).run(JSON.stringify(kept), r.delivery.id);
}

/** The addresses of `all` that are not in `split` (the refused and deferred ones), in their order. */
export function takenRecipients(all: readonly string[], split: readonly string[]): string[] {
  const key = (a: string): string => (asciiAddress(a) ?? a).toLowerCase();
  const gone = new Set(split.map(key));
  return all.filter((a) => !gone.has(key(a)));
}

interface SplitRow {
  state: DeliveryState;
  attempts: number;
  nextAttemptAt: number;
  lastError: string;
  retryFrom: number | null;
  retryAttempts: number;
}

/** Some recipients of the attempted delivery as a delivery of their own; returns its number. */
function insertSplit(db: Database, r: AttemptRecord, recipients: readonly string[], row: SplitRow): number {
  const d = r.delivery;
  const inserted = db
    .query<{ id: number }, [string, string, string, string | null, string, string, number, number, number, number, string, number | null, number]>(
      `INSERT INTO deliveries (message_id, kind, target, rule, category, state, attempts, created_at, next_attempt_at, updated_at,
                               last_error, retry_from, retry_attempts)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
    )
    .get(
      d.messageId, d.kind, JSON.stringify(recipients), d.rule, d.category, row.state, row.attempts,
      d.createdAt, row.nextAttemptAt, r.at + r.durationMs, row.lastError, row.retryFrom, row.retryAttempts,
    );
  if (inserted === null) throw new Error("inserting the delivery for split recipients returned no row");
  return inserted.id;
}

