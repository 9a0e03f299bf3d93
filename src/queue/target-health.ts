/**
 * What the delivery worker (worker.ts) knows of its targets from their last attempts: the webhook
 * URLs that answer, those failing for now (with the error), the receivers that asked for quiet
 * (Retry-After), and the relay's last failure. Read by the slot caps (slots.ts) at every claim and
 * by expiry (expire.ts); written once per attempt. Apart from the attempts in flight because it
 * outlives them: only an attempt's outcome, or new relay settings, change it.
 *
 * Trusts: the attempt's outcome. Failure: none (webhook-pauses.ts never throws).
 */
import type { Database } from "bun:sqlite";
import type { TargetFailure } from "./expire.ts";
import type { ClaimedDelivery } from "./queue-store.ts";
import type { AttemptOutcome } from "./retry.ts";
import { keyOf } from "./slots.ts";
import { createWebhookPauses } from "./webhook-pauses.ts";

export interface TargetHealth {
  /** Webhook URLs (keys) whose last attempt got an answer: slots.ts gives the others one slot. */
  readonly answering: ReadonlySet<string>;
  /** Webhook URLs whose last attempt failed for now, with its error and end; and the relay's (expire.ts). */
  readonly failing: ReadonlyMap<string, TargetFailure>;
  relayFailure(): TargetFailure | null;
  /** Webhook URLs whose receiver answered with Retry-After, until then or a `queue retry`. */
  paused(now: number): ReadonlySet<string>;
  /**
   * Whether the attempt's target answers: its slots (slots.ts), and what expire.ts gives up.
   * True when the target starts failing with it.
   */
  note(d: ClaimedDelivery, outcome: AttemptOutcome): boolean;
  /** New relay settings: the new relay's health is not known yet. */
  forgetRelay(): void;
}

/** `pollMs`: how often, at most, a running pause looks for a `queue retry` (webhook-pauses.ts). */
export function createTargetHealth(db: Database, pollMs: number, now: () => number): TargetHealth {
  const answering = new Set<string>();
  const failing = new Map<string, TargetFailure>();
  const pauses = createWebhookPauses(db, pollMs);
  let relayFailure: TargetFailure | null = null;

  return {
    answering,
    failing,
    relayFailure: () => relayFailure,
    paused: (at) => pauses.paused(at),
    note(d, outcome) {
      // When it ended: expire.ts gives up untried only what was due before the target failed.
      const failure = outcome.kind === "temporary" ? { error: outcome.error, at: now() } : null;
      const startsFailing = failure !== null && (d.kind === "webhook" ? !failing.has(d.target) : relayFailure === null);
      if (d.kind === "forward") {
        relayFailure = failure;
      } else if (failure === null) {
        answering.add(keyOf(d));
        failing.delete(d.target);
      } else {
        answering.delete(keyOf(d));
        failing.set(d.target, failure);
        const asked = outcome.kind === "temporary" ? outcome.retryAfterMs : undefined;
        if (asked !== undefined) pauses.pause(d.target, asked, now());
      }
      return startsFailing;
    },
    forgetRelay() {
      relayFailure = null;
    },
  };
}
