/**
 * The delivery worker's checks before each claim (worker.ts): forwards held while there is no
 * relay, or found held while there is one; retry times (and ages) a clock that went back left far ahead;
 * deliveries waiting for a failing target past QUEUE_MAX_AGE_HOURS (expire.ts). Apart from the
 * claim because each has its own interval and its own "last done" time, none of them per message.
 *
 * Trusts: the worker's clock. Failure: database errors reach the caller (a tick logs them and
 * tries again on the next one).
 */
import type { Database } from "bun:sqlite";
import type { Config } from "../config/config.ts";
import type { Logger } from "../log/logger.ts";
import type { CurrentRelay } from "./current-relay.ts";
import { expireWaiting, logExpired } from "./expire.ts";
import * as store from "./queue-store.ts";
import { RETRY_CAP_MS } from "./retry.ts";
import type { TargetHealth } from "./target-health.ts";

/** How often the queue is checked for retry times a clock that went back left far ahead. */
const CLOCK_CHECK_MS = 60_000;
/** Ahead of now by more than this (the longest retry wait, plus slack for clock slewing) = the clock went back. */
const CLOCK_BACK_MS = RETRY_CAP_MS + 60_000;
/** How often deliveries waiting for a failing target are checked against QUEUE_MAX_AGE_HOURS (expire.ts). */
const EXPIRY_CHECK_MS = 5_000;

export interface QueueHousekeepingOptions {
  db: Database;
  logger: Logger;
  queue: Config["queue"];
  relay: CurrentRelay;
  health: TargetHealth;
  /** How often held forwards are looked for while a relay is set. */
  pollMs: number;
}

export interface QueueHousekeeping {
  /** Runs the checks that are due at `t`, the claim's time. */
  beforeClaim(t: number): void;
  /** A target started failing: expiry is due before the next claim. */
  expireSoon(): void;
}

export function createQueueHousekeeping(opts: QueueHousekeepingOptions): QueueHousekeeping {
  const { db, logger, queue, relay, health, pollMs } = opts;
  /** When beforeClaim last looked for held forwards while a relay is set. */
  let heldCheckedAt = -Infinity;
  let clockCheckedAt = -Infinity;
  let expiryCheckedAt = -Infinity;

  return {
    beforeClaim(t) {
      if (relay.client() === null) {
        const held = store.holdForwards(db, t);
        if (held > 0) logger.warn("forwards held: no relay configured (set RELAY_SMTP_HOST)", { count: held });
      } else if (Math.abs(t - heldCheckedAt) >= pollMs) {
        // A forward the intake held while a SIGHUP was adding the relay (it decided before the
        // reload, committed after the release): found here within a poll, never left held.
        heldCheckedAt = t;
        if (store.anyHeld(db)) relay.releaseHeld();
      }
      // abs: after the clock went back, t is below the last check's time.
      if (Math.abs(t - clockCheckedAt) >= CLOCK_CHECK_MS) {
        clockCheckedAt = t;
        const n = store.rescheduleFromFuture(db, t, CLOCK_BACK_MS);
        if (n > 0) logger.warn("deliveries scheduled by a clock that has gone back since are due now", { count: n });
        const aged = store.ageFromFuture(db, t, CLOCK_BACK_MS);
        if (aged > 0) logger.warn("deliveries queued by a clock that has gone back since: QUEUE_MAX_AGE_HOURS counts from now", { count: aged });
      }
      // Before the claim: a failing target's slot goes to a delivery still within the age limit.
      if (Math.abs(t - expiryCheckedAt) >= EXPIRY_CHECK_MS) {
        expiryCheckedAt = t;
        logExpired(logger, expireWaiting(db, t, queue.maxAgeHours, { webhooks: health.failing, relay: health.relayFailure() }));
      }
    },
    expireSoon() {
      expiryCheckedAt = -Infinity;
    },
  };
}
