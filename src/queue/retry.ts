/**
 * Retry schedule and the state a delivery moves to after an attempt (SPEC §5). Pure: no
 * clock, no randomness of its own — callers pass `now` and a random source, so the
 * schedule is testable and the worker stays the only place that knows the time.
 *
 * Trusts: its inputs (validated config). Failure: none; every input yields a decision.
 */
import type { DeliveryState } from "../types.ts";

/** Longest wait between two attempts: SPEC §2 caps the doubling at one hour. */
export const RETRY_CAP_MS = 60 * 60 * 1000;
/** ±20% jitter, so deliveries deferred together by one outage do not retry in lockstep. */
export const RETRY_JITTER_FRACTION = 0.2;

/** Some of a forward's recipients, refused by the relay while it took the message for the others. */
export interface RefusedRecipients {
  recipients: string[];
  /** The relay's replies, one line: what `queue list` and the stats page show. */
  error: string;
  /**
   * Deferred only because the relay takes that many recipients per message (452 "too many
   * recipients", RFC 5321 4.5.3.1.10): sent at once in a new transaction, not after a backoff.
   */
  retryNow?: true;
}

/** What one attempt came to, as the transports report it. */
export type AttemptOutcome =
  /**
   * The message was taken (for every recipient, or for some). `refused`: recipients refused for
   * good (5xx); `deferred`: recipients refused for now (4xx), to be retried on their own — the
   * accepted ones have their copy and must not get another (Postfix keeps only those in its queue).
   */
  | { kind: "delivered"; reply: string; refused?: RefusedRecipients; deferred?: RefusedRecipients }
  /**
   * `retryAfterMs`: how long the other side asked us to wait (a webhook's `Retry-After` on a 429
   * or 503); the next attempt is not made sooner than that, nor later than RETRY_CAP_MS.
   * `refused`: a forward's recipients refused for good while the others were refused for now
   * (nobody took it): they fail at once; the delivery is retried for the others only.
   */
  | { kind: "temporary"; error: string; retryAfterMs?: number; refused?: RefusedRecipients }
  | { kind: "permanent"; error: string };

/**
 * Delay before the next attempt after `attempts` failed attempts (1 = the first failed).
 * base × 2^(attempts−1), ±20% jitter, never above RETRY_CAP_MS. `random` returns [0, 1).
 */
export function retryDelayMs(attempts: number, baseSeconds: number, random: () => number): number {
  const exponent = Math.max(0, Math.min(attempts - 1, 40));
  const unjittered = Math.min(RETRY_CAP_MS, baseSeconds * 1000 * 2 ** exponent);
  const factor = 1 - RETRY_JITTER_FRACTION + 2 * RETRY_JITTER_FRACTION * random();
  const jittered = Math.round(unjittered * factor);
  // Above the cap the jitter is folded back below it, not cut off: cut off, half of the capped
  // retries were exactly one hour, so deliveries deferred in one burst (a relay's 451 rate limit,
  // a restart, a clock stepped back) came back in the same second every hour.
  return Math.max(1, jittered > RETRY_CAP_MS ? 2 * RETRY_CAP_MS - jittered : jittered);
}

/** The last error of a delivery given up at QUEUE_MAX_AGE_HOURS. */
export function gaveUpReason(maxAgeHours: number, error: string): string {
  return `gave up after ${maxAgeHours} h (QUEUE_MAX_AGE_HOURS): ${error}`;
}

export interface NextStep {
  state: Extract<DeliveryState, "delivered" | "deferred" | "failed">;
  /** Unix ms of the next attempt (only meaningful for `deferred`). */
  nextAttemptAt: number;
  /**
   * Why it ended as failed (permanent error, or too old), or why a deferred one waits when that is
   * not its attempt's own error (the relay is suspended: relay-suspension.ts); null otherwise.
   */
  reason: string | null;
}

export interface ScheduleInput {
  outcome: AttemptOutcome;
  /** Attempts made so far, this one included. */
  attempts: number;
  /** When the delivery was queued (unix ms). */
  createdAt: number;
  now: number;
  maxAgeHours: number;
  retryBaseSeconds: number;
  random: () => number;
}

/**
 * Decides the state after an attempt. A temporary failure is retried until the delivery is
 * QUEUE_MAX_AGE_HOURS old, no sooner than a `retryAfterMs` the outcome carries; the last retry is moved up to the expiry moment, so a delivery
 * gets one final try at its deadline rather than being given up before it.
 */
export function nextStep(input: ScheduleInput): NextStep {
  const { outcome, now } = input;
  if (outcome.kind === "delivered") return { state: "delivered", nextAttemptAt: now, reason: null };
  if (outcome.kind === "permanent") return { state: "failed", nextAttemptAt: now, reason: outcome.error };
  const expiresAt = input.createdAt + input.maxAgeHours * 3600 * 1000;
  if (now >= expiresAt) {
    return { state: "failed", nextAttemptAt: now, reason: gaveUpReason(input.maxAgeHours, outcome.error) };
  }
  const backoff = retryDelayMs(input.attempts, input.retryBaseSeconds, input.random);
  // A receiver that says when to come back is heeded (hammering a rate limit only prolongs it),
  // within the one-hour cap, so a huge Retry-After cannot park a delivery for days.
  const asked = Math.min(RETRY_CAP_MS, Math.max(0, outcome.retryAfterMs ?? 0));
  const delay = Math.max(backoff, asked);
  return { state: "deferred", nextAttemptAt: Math.min(now + delay, expiresAt), reason: null };
}
