/**
 * At start: deliveries left `delivering` by a crash (kill -9, the kernel's OOM killer, a
 * delivery thread that died) are attempted again: at-least-once, a duplicate is possible.
 *
 * The interrupted attempt counts as an attempt, recorded with INTERRUPTED_REPLY and counted as
 * deferred (failed when given up) in the delivery counters, like one cut off by SIGTERM. The first
 * interruption is retried at once (a crash that had nothing to do with this delivery must not
 * delay it). A delivery whose previous attempt was interrupted too is scheduled as after a
 * temporary failure: with the backoff, and `failed` once older than QUEUE_MAX_AGE_HOURS. Before,
 * each start made it due at once with `attempts` left at 0, and the age limit is only checked
 * after an attempt that finishes: a message whose delivery itself kills serve (a webhook post of
 * a big message past the memory limit) killed every restart within seconds, for ever, and no
 * mail was received meanwhile.
 *
 * Trusts: the schema of store/migrations.ts. Failure: SQLite errors are thrown to the caller.
 */
import type { Database } from "bun:sqlite";
import { redactUrl } from "../act/redact-url.ts";
import type { Logger } from "../log/logger.ts";
import { bumpCounterBatch, type CounterIncrement } from "../store/counters.ts";
import type { ClaimedDelivery } from "./queue-store.ts";
import { nextStep, type NextStep } from "./retry.ts";

/** What an interrupted attempt is recorded as: its reply in delivery_attempts, the delivery's last_error. */
export const INTERRUPTED_REPLY = "attempt interrupted: serve or its delivery thread crashed or was killed during it";

export interface InterruptedDelivery
  extends Pick<ClaimedDelivery, "id" | "messageId" | "kind" | "target" | "rule" | "category" | "attempts" | "retryAttempts" | "ageFrom"> {
  /** When it was claimed: the interrupted attempt's start. */
  claimedAt: number;
  /** The attempt before this one was interrupted as well. */
  interruptedBefore: boolean;
  /** Where it goes now: queued (due now), deferred or failed. */
  step: NextStep | null;
}

export interface RecoverOptions {
  now: number;
  maxAgeHours: number;
  retryBaseSeconds: number;
  random: () => number;
}

/** Records each interrupted attempt and schedules its delivery again; returns them with their next step. */
export function recoverInterrupted(db: Database, opts: RecoverOptions): InterruptedDelivery[] {
  return db
    .transaction(() => {
      const rows = db
        .query<Omit<InterruptedDelivery, "step" | "interruptedBefore"> & { lastReply: string | null }, []>(
          `SELECT d.id, d.message_id AS messageId, d.kind, d.target, d.rule, d.category, d.attempts,
                  d.retry_attempts AS retryAttempts, coalesce(d.retry_from, d.created_at) AS ageFrom, d.updated_at AS claimedAt,
                  (SELECT a.reply FROM delivery_attempts a WHERE a.delivery_id = d.id ORDER BY a.id DESC LIMIT 1) AS lastReply
           FROM deliveries d WHERE d.state = 'delivering'`,
        )
        .all();
      const increments: CounterIncrement[] = [];
      const recovered = rows.map(({ lastReply, ...row }): InterruptedDelivery => {
        const interruptedBefore = lastReply === INTERRUPTED_REPLY;
        const step = interruptedBefore
          ? nextStep({
              outcome: { kind: "temporary", error: INTERRUPTED_REPLY },
              attempts: row.attempts + 1 - row.retryAttempts,
              createdAt: row.ageFrom,
              now: opts.now,
              maxAgeHours: opts.maxAgeHours,
              retryBaseSeconds: opts.retryBaseSeconds,
              random: opts.random,
            })
          : null;
        db.query(
          `UPDATE deliveries SET state = ?, attempts = attempts + 1, next_attempt_at = ?, updated_at = ?, last_error = ?
           WHERE id = ? AND state = 'delivering'`,
        ).run(step?.state ?? "queued", step?.nextAttemptAt ?? opts.now, opts.now, step?.reason ?? INTERRUPTED_REPLY, row.id);
        // duration_ms 0: how long it ran before the crash is not known (and it stays out of the latency histogram).
        db.query(`INSERT INTO delivery_attempts (delivery_id, at, target, duration_ms, ok, reply) VALUES (?, ?, ?, 0, 0, ?)`)
          .run(row.id, row.claimedAt, shownTarget(row), INTERRUPTED_REPLY);
        // An attempt's outcome, as for one cut off by SIGTERM: one due again at once counts as deferred
        // (mailgw_deliveries_total is attempt outcomes; without it, a kill -9 left attempts uncounted).
        increments.push({ at: opts.now, metric: `${step?.state ?? "deferred"}:${row.kind}`, rule: row.rule, category: row.category });
        return { ...row, interruptedBefore, step };
      });
      bumpCounterBatch(db, increments);
      return recovered;
    })
    .immediate();
}

/** A webhook's URL without its query (it may carry a token), as an attempt's record and log line show it. */
function shownTarget(d: Pick<InterruptedDelivery, "kind" | "target">): string {
  return d.kind === "webhook" ? redactUrl(d.target) : d.target;
}

/** One line for those due again now; one per delivery interrupted again, with where it goes. */
export function logInterrupted(logger: Logger, recovered: readonly InterruptedDelivery[]): void {
  const again = recovered.filter((d) => d.step === null).length;
  if (again > 0) logger.warn("deliveries interrupted by a stop or crash are queued again", { count: again });
  for (const d of recovered) {
    if (d.step === null) continue;
    const fields = { id: d.messageId, delivery: d.id, kind: d.kind, rule: d.rule, category: d.category, target: shownTarget(d), attempt: d.attempts + 1 };
    if (d.step.state === "failed") {
      logger.error("failed", { ...fields, error: d.step.reason });
      continue;
    }
    logger.warn("delivery interrupted by a crash again: next attempt after a backoff", {
      ...fields,
      error: INTERRUPTED_REPLY,
      next_attempt: new Date(d.step.nextAttemptAt).toISOString(),
      hint: "if the kernel killed serve for memory (its log: \"Out of memory: Killed process ... (mailgw)\"), this delivery may be the cause: drop it with `mailgw queue drop`, or give serve more memory",
    });
  }
}
