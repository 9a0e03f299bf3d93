/**
 * QUEUE_MAX_AGE_HOURS for deliveries that wait for a failing target without an attempt (SPEC §5:
 * older than that → `failed`). retry.ts applies the limit after an attempt; a delivery due but
 * never claimed, because its target holds every slot it may have (a webhook URL whose attempts
 * fail gets one, each for up to the 120 s deadline when it never answers), was never looked at:
 * a backlog behind a receiver that hangs stayed `queued` for days past the limit, not `failed`.
 *
 * Only behind a target whose last attempt failed for now, and failed after the delivery became due
 * (it waited while its target was tried and failed), as Postfix gives up mail deferred for a dead
 * destination without trying each message: the failing target's next slot goes to a delivery still
 * within the limit. One waiting behind a healthy but busy target, or after serve was down for a
 * while, still gets its attempt; so does the final try retry.ts schedules at the limit when the
 * target's last failure came before it: that failure may be an hour old, the receiver back since.
 * No attempt is recorded (none was made); the spool file stays, as for every failed one.
 * Trusts: the schema of store/migrations.ts. Failure: SQLite errors are thrown to the caller.
 */
import type { Database } from "bun:sqlite";
import { redactUrl } from "../act/redact-url.ts";
import type { Logger } from "../log/logger.ts";
import { commitWithShortWaits, withoutFsync } from "../spool/wal-sync.ts";
import { bumpCounterBatch } from "../store/counters.ts";
import { parseAddresses } from "./attempt.ts";
import type { ClaimedDelivery } from "./queue-store.ts";

/** A target's last attempt, failed for now: its error, and when it ended (unix ms). */
export interface TargetFailure {
  error: string;
  at: number;
}

/** The targets whose last attempt failed for now. */
export interface FailingTargets {
  /** Webhook URL → its failure. */
  webhooks: ReadonlyMap<string, TargetFailure>;
  /** The relay's failure, or null when its last forward did not fail for now. */
  relay: TargetFailure | null;
}

export interface ExpiredDelivery extends Pick<ClaimedDelivery, "id" | "messageId" | "kind" | "target" | "rule" | "category" | "attempts"> {
  /** The error it was given up with. */
  error: string;
}

/**
 * Due deliveries (queued or deferred) older than the limit, to a target that failed since they
 * became due, become `failed` with that target's error; returns them. Due: `next_attempt_at <=
 * now`, so held-back intake rows and held forwards (their age counts from the relay being set) are
 * never touched. Read first: no write lock unless one is found.
 */
export function expireWaiting(db: Database, now: number, maxAgeHours: number, failing: FailingTargets): ExpiredDelivery[] {
  if (failing.webhooks.size === 0 && failing.relay === null) return [];
  const where = `state IN ('queued', 'deferred') AND next_attempt_at <= ?1 AND coalesce(retry_from, created_at) <= ?2
    AND next_attempt_at <= CASE kind WHEN 'forward' THEN ?5 ELSE (SELECT json_extract(value, '$.at') FROM json_each(?3) WHERE key = deliveries.target) END`;
  const args = [
    now, now - maxAgeHours * 3600 * 1000, JSON.stringify(Object.fromEntries(failing.webhooks)), failing.relay?.error ?? null, failing.relay?.at ?? null,
  ] as const;
  if (db.query(`SELECT 1 FROM deliveries WHERE ${where} LIMIT 1`).get(...args) === null) return [];
  const why = `gave up after ${maxAgeHours} h (QUEUE_MAX_AGE_HOURS) waiting for a slot while its target fails: `;
  return withoutFsync(db, () => commitWithShortWaits(db, () => {
    const expired = db
      .query<ExpiredDelivery, [...typeof args, string]>(
        `UPDATE deliveries SET state = 'failed', updated_at = ?1, next_attempt_at = ?1, last_error = ?6 ||
           CASE kind WHEN 'forward' THEN ?4 ELSE (SELECT json_extract(value, '$.error') FROM json_each(?3) WHERE key = deliveries.target) END
         WHERE ${where}
         RETURNING id, message_id AS messageId, kind, target, rule, category, attempts, last_error AS error`,
      )
      .all(...args, why);
    bumpCounterBatch(db, expired.map((d) => ({ at: now, metric: `failed:${d.kind}`, rule: d.rule, category: d.category })));
    return expired;
  }));
}

/** One `failed` line per delivery given up, as for one given up after an attempt. */
export function logExpired(logger: Logger, expired: readonly ExpiredDelivery[]): void {
  for (const d of expired) {
    const target = d.kind === "webhook" ? redactUrl(d.target) : parseAddresses(d.target).join(",");
    logger.error("failed", { id: d.messageId, delivery: d.id, kind: d.kind, rule: d.rule, category: d.category, target, attempts: d.attempts, error: d.error });
  }
}
