/**
 * An attempt's outcome as the delivery worker (worker.ts) commits and logs it: the next state of
 * its delivery and of the recipients split off (retry.ts schedules them), and one log line per
 * state change. Apart from the attempt runner because it is pure but for the logger: no database,
 * no clock (the times come in), no transport.
 *
 * Trusts: the attempt's outcome and the claimed row. Failure: none.
 */
import type { Config } from "../config/config.ts";
import type { Logger } from "../log/logger.ts";
import { narrowTarget, parseAddresses } from "./attempt.ts";
import type { AttemptRecord, ClaimedDelivery, FinishResult } from "./queue-store.ts";
import { suspendedStep, type RelaySuspension } from "./relay-suspension.ts";
import { nextStep, type AttemptOutcome, type NextStep } from "./retry.ts";
import { takenRecipients } from "./split-deliveries.ts";

/**
 * The attempt's result and the next state of its delivery (and of recipients split off). A
 * forward the relay itself failed (`suspended`) waits for the suspension's end, not its own backoff.
 */
export function attemptRecord(
  d: ClaimedDelivery, outcome: AttemptOutcome, target: string, at: number, end: number, tookMs: number,
  suspended: RelaySuspension | null, queue: Config["queue"], random: () => number,
): AttemptRecord {
  const schedule = (o: AttemptOutcome) =>
    nextStep({ outcome: o, attempts: d.attempts + 1 - d.retryAttempts, createdAt: d.ageFrom, now: end, ...queue, random });
  const ok = outcome.kind === "delivered";
  // A 5xx recipient is done with whether the others took the message or were deferred.
  const refused = outcome.kind === "permanent" ? undefined : outcome.refused;
  // Recipients deferred while the others took the message: scheduled as this delivery would
  // have been had the whole attempt failed temporarily (same backoff, same age limit).
  const split = outcome.kind === "delivered" ? outcome.deferred : undefined;
  // Over the relay's recipient cap: the rest go in a new transaction now (RFC 5321 4.5.3.1.10).
  const now: NextStep = { state: "deferred", nextAttemptAt: end, reason: null };
  const deferred = split ? { ...split, step: split.retryNow ? now : schedule({ kind: "temporary", error: split.error }) } : undefined;
  return {
    delivery: d, at, durationMs: Math.max(0, tookMs), target, ok,
    reply: ok ? outcome.reply : outcome.error,
    step: suspended ? suspendedStep(schedule(outcome), suspended, d.attempts + 1, d.ageFrom + queue.maxAgeHours * 3600 * 1000) : schedule(outcome),
    ...(refused ? { refused } : {}), ...(deferred ? { deferred } : {}),
  };
}

/** One line per attempt, plus one per group of recipients split off into their own delivery. */
export function logAttempt(logger: Logger, record: AttemptRecord, result: FinishResult): void {
  const { delivery: d, step, refused, deferred } = record;
  // Each line names only its own recipients, as `queue list` does (split-deliveries.ts).
  const split = [...(refused?.recipients ?? []), ...(deferred?.recipients ?? [])];
  const fields = {
    id: d.messageId,
    delivery: d.id,
    kind: d.kind,
    rule: d.rule,
    category: d.category,
    target: split.length ? narrowTarget(record.target, takenRecipients(parseAddresses(d.target), split)) : record.target,
    attempt: d.attempts + 1,
    duration_ms: record.durationMs,
    ...(record.ok ? { reply: record.reply } : { error: step.reason ?? record.reply }),
    ...(step.state === "deferred" ? { next_attempt: new Date(step.nextAttemptAt).toISOString() } : {}),
  };
  if (!result.recorded) {
    logger.warn("delivery dropped while in flight", fields);
    return;
  }
  // Under the new delivery's number, as for deferred below: the one `queue list` shows for them.
  if (refused) {
    // Done with: the next try of a delivery deferred for the others is not theirs.
    const { next_attempt: _, ...done } = fields;
    logger.error("failed", { ...done, delivery: result.refusedDelivery, target: narrowTarget(record.target, refused.recipients), recipients: refused.recipients, error: refused.error });
  }
  if (deferred) {
    // Logged under the new delivery's number: the one `queue list` shows for these recipients.
    const own = {
      ...fields, delivery: result.deferredDelivery, target: narrowTarget(record.target, deferred.recipients),
      recipients: deferred.recipients, error: deferred.step.reason ?? deferred.error,
    };
    if (deferred.step.state === "deferred") logger.warn("deferred", { ...own, next_attempt: new Date(deferred.step.nextAttemptAt).toISOString() });
    else logger.error("failed", own);
  }
  if (step.state === "delivered") logger.info("delivered", fields);
  else if (step.state === "deferred") logger.warn("deferred", fields);
  else logger.error("failed", fields);
}
