/**
 * When the delivery worker (worker.ts) claims due deliveries: woken by intake and by finished
 * attempts (coalesced into one claim per event-loop turn), and by a short poll, which also
 * notices `mailgw queue retry` from another process. Each claim runs the housekeeping, asks the
 * relay gate how many forwards may start, and starts what the slots allow (slots.ts). Owns the
 * worker's running state (not started, running, stopping), since claims are what start and stop
 * turn on and off.
 *
 * Trusts: its parts (worker.ts wires them). Failure: a claim's database error is logged and the
 * next tick tries again.
 */
import type { Database } from "bun:sqlite";
import type { Logger } from "../log/logger.ts";
import type { AttemptsInFlight } from "./attempts-in-flight.ts";
import type { CurrentRelay } from "./current-relay.ts";
import type { QueueHousekeeping } from "./queue-housekeeping.ts";
import * as store from "./queue-store.ts";
import type { RelayGate } from "./relay-suspension.ts";
import { applyCaps, claimLimits, keyOf } from "./slots.ts";

export interface ClaimLoopOptions {
  db: Database;
  logger: Logger;
  now: () => number;
  pollMs: number;
  maxInFlight: number;
  relay: CurrentRelay;
  gate: RelayGate;
  housekeeping: QueueHousekeeping;
  inFlight: AttemptsInFlight;
}

export interface ClaimLoop {
  /** The worker starts (once): false when it started before. Claims begin with tick(). */
  begin(): boolean;
  /** Claims now, and again after each poll interval. */
  tick(): void;
  /** Coalesces wake-ups (intake, finished attempts) into one claim per event-loop turn. */
  wake(): void;
  /** The worker stops: no more claims. False when it is not running (never started, or stopping already). */
  end(): boolean;
  stopping(): boolean;
}

export function createClaimLoop(opts: ClaimLoopOptions): ClaimLoop {
  const { logger, pollMs, gate, inFlight } = opts;
  let state: "idle" | "running" | "stopping" = "idle";
  let timer: ReturnType<typeof setTimeout> | null = null;
  let tickScheduled = false;

  function scheduleTick(): void {
    if (tickScheduled || state !== "running") return;
    tickScheduled = true;
    setImmediate(tick);
  }

  function tick(): void {
    tickScheduled = false;
    if (state !== "running") return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(tick, pollMs);
    try {
      claimAndRun(opts, settled);
    } catch (err) {
      logger.error("delivery queue error", { error: err instanceof Error ? err.message : String(err) });
    }
  }

  /** An attempt is over (recorded or not): its probe slot is free, and its target may refill. */
  function settled(d: store.ClaimedDelivery): void {
    gate.settled(d.id);
    if (inFlight.worthClaiming(keyOf(d))) scheduleTick();
  }

  return {
    begin() {
      if (state !== "idle") return false;
      state = "running";
      return true;
    },
    tick,
    wake: scheduleTick,
    end() {
      if (state !== "running") return false;
      state = "stopping";
      if (timer) clearTimeout(timer);
      return true;
    },
    stopping: () => state === "stopping",
  };
}

/** One claim: housekeeping, the relay gate's allowance, then what the free slots allow. */
function claimAndRun(opts: ClaimLoopOptions, settled: (d: store.ClaimedDelivery) => void): void {
  const { db, now, maxInFlight, relay, gate, housekeeping, inFlight } = opts;
  const t = now();
  housekeeping.beforeClaim(t);
  const forwardAllowance = relay.client() === null ? Infinity : gate.beforeClaim(t);
  inFlight.allowForwards(forwardAllowance);
  const free = maxInFlight - inFlight.size();
  if (free <= 0) return;
  const use = inFlight.use();
  for (const d of store.claimDue(db, t, claimLimits(use, free), (candidates) => applyCaps(use, candidates, free))) {
    if (d.kind === "forward" && forwardAllowance === 1) gate.claimed(d.id);
    inFlight.start(d, settled);
  }
}
