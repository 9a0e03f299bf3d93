/**
 * What the relay gate (relay-suspension.ts) writes and logs when the suspension changes: its row,
 * the forwards it defers or releases (relay-suspension-store.ts), and the log line of each
 * change. Separate from the gate's state (the suspension in memory, the probe): a write that
 * fails here is logged, and the change still applies in memory (it bounds the connections).
 *
 * Trusts: the gate to call it once per change. Failure: writes are logged as "… could not be
 * recorded", never thrown; reading the row at start and deferring the due forwards throw.
 */
import type { Database } from "bun:sqlite";
import { describeError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import { forwardTarget, parseAddresses } from "./attempt.ts";
import {
  deferDueForwards,
  deleteSuspension,
  liftSuspension,
  readSuspension,
  recordSuspension,
  RELAY_FIX_HINT,
  resumeForwards,
  suspendedError,
  suspensionRecorded,
  type FailedForward,
  type RelaySuspension,
} from "./relay-suspension-store.ts";
import { gaveUpReason } from "./retry.ts";

export interface SuspensionJournalOptions {
  db: Database;
  logger: Logger;
  queue: { maxAgeHours: number };
}

export interface SuspensionJournal {
  /** `queue retry` or SIGHUP deleted the row: the suspension is over. */
  liftedElsewhere(): boolean;
  /** The relay failed with no suspension on: it is suspended now. */
  suspended(s: RelaySuspension): void;
  /** The suspension as it now stands. */
  record(s: RelaySuspension): void;
  /** Forwards due while suspended wait for its end; those past their age fail. */
  deferDue(s: RelaySuspension, now: number): void;
  /** The suspension `was` ended: the relay is `back` (its row goes), or it was lifted. */
  resumed(was: RelaySuspension, now: number, back: boolean): void;
  /** New relay settings: the row goes. */
  lifted(): void;
}

/** Runs a database write whose failure must not lose the attempt that triggered it. */
function safely(logger: Logger, what: string, write: () => void): void {
  try {
    write();
  } catch (err) {
    logger.error(`${what} could not be recorded`, { error: describeError(err) });
  }
}

/**
 * At start: the suspension the last run left on record, going on with its probe due now; null
 * when there is none, or it was of another relay (or of none): then it is dropped, its forwards due.
 */
export function takeOverAtStart(opts: SuspensionJournalOptions, relay: string | null, now: number): RelaySuspension | null {
  const { db, logger } = opts;
  const stored = readSuspension(db);
  if (stored === null) return null;
  if (stored.relay !== relay) {
    // Another relay (or none) since: what waited for that one's probe goes now, as after a
    // reload that changes the relay (lift), not at the old suspension's end.
    let due = 0;
    safely(logger, "the end of the relay suspension", () => {
      liftSuspension(db);
      due = resumeForwards(db, now);
    });
    // Without a relay at all they are held next (the worker's own warning says so).
    const next = relay === null ? "held until a relay is set" : "due now";
    logger.info(`the relay suspended when serve stopped is no longer configured: the forwards it held are ${next}`, {
      suspended_relay: stored.relay, relay, forwards_due: due,
    });
    return null;
  }
  // The suspension goes on, but its probe is due now: a restart is how an admin applies a
  // fixed password or CA file. One forward is tried; the others wait for its outcome.
  const probing = { ...stored, until: now };
  // Recorded too: /stats and `queue list` show the probe going now, not the old end.
  safely(logger, "the relay suspension's probe at start", () => {
    recordSuspension(db, probing);
    resumeForwards(db, now);
  });
  logger.warn("relay suspended when serve stopped: one forward is tried now, the others wait for it", {
    relay, reason: stored.reason, since: new Date(stored.since).toISOString(),
  });
  return probing;
}

export function createSuspensionJournal(opts: SuspensionJournalOptions): SuspensionJournal {
  const { db, logger, queue } = opts;

  function failFor(failed: FailedForward[], suspended: RelaySuspension): void {
    for (const f of failed) {
      logger.error("failed", {
        id: f.messageId, delivery: f.id, kind: "forward", rule: f.rule, category: f.category,
        target: forwardTarget(suspended.relay, parseAddresses(f.target)), error: gaveUpReason(queue.maxAgeHours, suspendedError(suspended)),
      });
    }
  }

  return {
    liftedElsewhere: () => !suspensionRecorded(db),
    suspended(s) {
      logger.warn("relay suspended: forwards wait, one is tried when the suspension ends", {
        relay: s.relay, reason: s.reason, until: new Date(s.until).toISOString(), hint: RELAY_FIX_HINT,
      });
    },
    record(s) {
      safely(logger, "the relay suspension", () => recordSuspension(db, s));
    },
    deferDue(s, now) {
      failFor(deferDueForwards(db, s, now, queue.maxAgeHours), s);
    },
    resumed(was, now, back) {
      let due = 0;
      safely(logger, "the end of the relay suspension", () => {
        if (back) deleteSuspension(db);
        due = resumeForwards(db, now);
      });
      const fields = { relay: was.relay, suspended_since: new Date(was.since).toISOString(), forwards_due: due };
      if (back) logger.info("relay is back: the suspension is over, deferred forwards are due now", fields);
      else logger.info("relay suspension lifted (mailgw queue retry, or SIGHUP): trying the relay again", fields);
    },
    lifted() {
      safely(logger, "the end of the relay suspension", () => void liftSuspension(db));
    },
  };
}
