/**
 * Relay suspension: Postfix's "delivery temporarily suspended" for a dead destination, adapted
 * to the one relay. When the relay itself fails (no session can be set up: connection, greeting,
 * EHLO, STARTTLS or TLS handshake, AUTH; or it answers 421, or a session dies without a reply:
 * closed, reset or silent past the socket timeout), trying every due forward on its own
 * would open a connection (and send the password) per message: hundreds an hour to a relay that
 * is down, and Gmail or SES lock an account after repeated failed logins. Instead:
 *  - the relay is suspended for suspensionDelayMs (QUEUE_RETRY_BASE_SECONDS, doubling per failed
 *    probe, capped at an hour as SPEC §2's message backoff); forwards that become due meanwhile
 *    are not attempted (no attempt counted) but deferred to its end, their last error saying
 *    RELAY_SUSPENDED_PREFIX and why; those past QUEUE_MAX_AGE_HOURS fail as they would have;
 *  - at its end ONE forward is tried (the probe). A session that works (the message taken, or
 *    refused on its own account) ends the suspension, and every forward deferred by it is due at
 *    once: the queue drains with the usual caps, not after each message's own backoff;
 *  - `mailgw queue retry` and SIGHUP lift it (they delete its meta row, which the worker checks
 *    while suspended), as does a change of relay settings;
 *  - a restart probes at once: what an admin does after fixing the password or the CA in the
 *    environment (which only a restart reads), as Postfix forgets dead destinations on restart.
 *    A failed probe goes on with the doubled backoff, so restarts cost one connection each.
 * The suspension lives in the delivery worker; its meta row (`relay_suspension`) is what
 * /healthz, /stats and `mailgw queue list` show, and what the next start goes on with.
 * A reply to MAIL, RCPT or DATA is the message's problem (its own backoff), never a suspension.
 * This file holds the backoff and the gate's state (the suspension, the probe); the rows are in
 * relay-suspension-store.ts, what the gate writes and logs in relay-suspension-journal.ts.
 *
 * Trusts: the worker's calls (one gate per worker). Failure: database errors while recording or
 * lifting are logged; the suspension in memory still applies (and bounds the connections).
 */
import type { Database } from "bun:sqlite";
import type { Logger } from "../log/logger.ts";
import { createSuspensionJournal, type SuspensionJournal, takeOverAtStart } from "./relay-suspension-journal.ts";
import { suspendedError, waitUntil, type RelaySuspension } from "./relay-suspension-store.ts";
import { RETRY_CAP_MS, type NextStep } from "./retry.ts";

export {
  deferDueForwards,
  liftSuspension,
  readSuspension,
  RELAY_FIX_HINT,
  RELAY_SUSPENDED_PREFIX,
  resumeForwards,
  suspendedError,
  type RelaySuspension,
} from "./relay-suspension-store.ts";

/** How long a relay stays suspended after `failures` failed tries in a row: base × 2^(n−1), at most an hour. */
export function suspensionDelayMs(failures: number, baseSeconds: number): number {
  const exponent = Math.max(0, Math.min(failures - 1, 40));
  return Math.max(1, Math.min(RETRY_CAP_MS, Math.round(baseSeconds * 1000 * 2 ** exponent)));
}

/** A forward's step after an attempt (`attempts` made, this one included) the relay itself failed. */
export function suspendedStep(step: NextStep, s: RelaySuspension, attempts: number, expiresAt: number): NextStep {
  if (step.state !== "deferred") return step;
  return { state: "deferred", nextAttemptAt: waitUntil(s, attempts, expiresAt), reason: suspendedError(s) };
}

/**
 * The suspension after an attempt the relay itself failed: a new one when none was on; after a
 * failed probe, the next with the backoff doubled; else `s` itself (the attempt was in flight
 * when the relay was suspended: it waits for the same end).
 */
function afterRelayFailure(s: RelaySuspension | null, probe: boolean, relay: string, error: string, now: number, baseSeconds: number): RelaySuspension {
  if (s === null) return { relay, since: now, until: now + suspensionDelayMs(1, baseSeconds), reason: error, failures: 1 };
  if (!probe) return s;
  const next = { ...s, reason: error, failures: s.failures + 1 };
  next.until = now + suspensionDelayMs(next.failures, baseSeconds);
  return next;
}

/**
 * No suspension lasts longer than RETRY_CAP_MS: an end further away was set before the clock
 * was stepped back (NTP), and every forward would wait for the clock to catch up (a day for a
 * day's step). It ends now (recorded); the worker's clock check has made them due.
 */
function withinRetryCap(s: RelaySuspension, now: number, journal: SuspensionJournal): RelaySuspension {
  if (s.until - now <= RETRY_CAP_MS) return s;
  const ended = { ...s, until: now };
  journal.record(ended);
  return ended;
}

export interface RelayGateOptions {
  db: Database;
  logger: Logger;
  queue: { retryBaseSeconds: number; maxAgeHours: number };
}

/** The worker's side of the suspension (see the module comment). */
export interface RelayGate {
  /** At start: a suspension the last run left on record is probed at once; one of another relay (or of none) is dropped, its forwards due. */
  start(relay: string | null, now: number): void;
  /** Before a claim: how many more forwards may start (Infinity: no limit; 1: the probe; 0: none). Defers the due ones while suspended. */
  beforeClaim(now: number): number;
  /** A forward was claimed with beforeClaim's allowance of 1: it is the probe. */
  claimed(id: number): void;
  /** A forward's attempt ended: the suspension its next step follows (the relay failed), or null. */
  ended(id: number, relay: string, relayDown: boolean | undefined, error: string, now: number): RelaySuspension | null;
  /** The attempt is over (recorded or not): its probe slot is free. */
  settled(id: number): void;
  /** New relay settings: whatever was suspended is not this relay. */
  lift(now: number): void;
}

export function createRelayGate(opts: RelayGateOptions): RelayGate {
  const journal = createSuspensionJournal(opts);
  const { queue } = opts;
  let s: RelaySuspension | null = null;
  let probe: number | null = null;

  function resume(now: number, back: boolean): void {
    const was = s;
    s = null;
    if (was !== null) journal.resumed(was, now, back);
  }

  return {
    start(relay, now) {
      const stored = takeOverAtStart(opts, relay, now);
      if (stored !== null) s = stored;
    },
    beforeClaim(now) {
      if (s === null) return Infinity;
      if (journal.liftedElsewhere()) {
        resume(now, false);
        return Infinity;
      }
      if (probe !== null) return 0;
      s = withinRetryCap(s, now, journal);
      if (now >= s.until) return 1;
      journal.deferDue(s, now);
      return 0;
    },
    claimed(id) {
      if (s !== null && probe === null) probe = id;
    },
    ended(id, relay, relayDown, error, now) {
      if (relayDown === false) {
        resume(now, true);
        return null;
      }
      if (relayDown !== true) return null;
      if (s !== null && journal.liftedElsewhere()) s = null; // lifted during the attempt: this failure starts anew
      const was = s;
      s = afterRelayFailure(was, probe === id, relay, error, now, queue.retryBaseSeconds);
      if (was === null) journal.suspended(s);
      if (s !== was) journal.record(s);
      return s;
    },
    settled(id) {
      if (probe === id) probe = null;
    },
    lift(now) {
      probe = null;
      if (s === null) return;
      resume(now, false);
      journal.lifted();
    },
  };
}
