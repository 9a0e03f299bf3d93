/**
 * The delivery worker's attempts in flight (worker.ts), each with its target's key and whether
 * it carries a large message, and the caps they are measured against: together the SlotUse that
 * slots.ts picks a claim's deliveries by. Apart from the claim loop because the claim, the
 * refill after an attempt and the stop all read it.
 *
 * Trusts: nothing. Failure: an attempt that throws is logged; its slot is freed all the same.
 */
import type { Logger } from "../log/logger.ts";
import type { AttemptRunner } from "./attempt-runner.ts";
import type { CurrentRelay } from "./current-relay.ts";
import type { ClaimedDelivery } from "./queue-store.ts";
import { countByKey, isLarge, keyOf, MAX_PER_WEBHOOK_TARGET, type SlotUse } from "./slots.ts";
import type { TargetHealth } from "./target-health.ts";

export interface AttemptsInFlightOptions {
  logger: Logger;
  attempt: AttemptRunner;
  relay: CurrentRelay;
  health: TargetHealth;
  /** Webhook attempts in flight at most, all URLs together. */
  webhookCap: number;
  now: () => number;
}

export interface AttemptsInFlight {
  size(): number;
  /** Runs the delivery's attempt in a slot; once it settles, the slot is free and `settled(d)` is called. */
  start(d: ClaimedDelivery, settled: (d: ClaimedDelivery) => void): void;
  /** Forwards the gate lets start on this claim besides those running (Infinity: no suspension). */
  allowForwards(n: number): void;
  /** The attempts in flight and the caps, for slots.ts. */
  use(): SlotUse;
  /** Whether an attempt to `key` just ended frees enough slots to claim again. */
  worthClaiming(key: string): boolean;
  /** Settles once every attempt in flight now has. */
  allSettled(): Promise<unknown>;
}

export function createAttemptsInFlight(opts: AttemptsInFlightOptions): AttemptsInFlight {
  const { logger, attempt, relay, health, webhookCap, now } = opts;
  const running = new Map<number, { promise: Promise<void>; key: string; large: boolean }>();
  let forwardAllowance = Infinity;

  function use(): SlotUse {
    const all = [...running.values()];
    const relayRunning = all.filter((r) => r.key === "relay").length;
    return { running: all, relayCap: relay.client() === null ? null : Math.min(relay.cap(), relayRunning + forwardAllowance), webhookCap, answering: health.answering, failing: health.failing, paused: health.paused(now()) };
  }

  return {
    size: () => running.size,
    start(d, settled) {
      const promise = attempt(d)
        .catch((err) => logger.error("delivery attempt error", { id: d.messageId, delivery: d.id, error: String(err) }))
        .finally(() => {
          running.delete(d.id);
          settled(d);
        });
      running.set(d.id, { promise, key: keyOf(d), large: isLarge(d) });
    },
    allowForwards(n) {
      forwardAllowance = n;
    },
    use,
    /**
     * After an attempt ends: claim again only once a quarter of its target's slots are free, so a
     * busy relay is refilled in small batches (one claim query and commit per batch, not per
     * message). Idle targets and webhooks (small caps) still refill at once; the poll covers the rest.
     */
    worthClaiming(key) {
      const cap = key === "relay" ? relay.cap() : MAX_PER_WEBHOOK_TARGET;
      return countByKey(use(), key) <= Math.floor((cap * 3) / 4);
    },
    allSettled: () => Promise.allSettled([...running.values()].map((r) => r.promise)),
  };
}
