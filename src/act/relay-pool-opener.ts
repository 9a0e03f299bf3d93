/**
 * Opening the relay pool's sessions (relay-pool.ts): when one more may open (never past
 * maxConnections or beyond the messages waiting; one setup at a time until a session got
 * through; none for a while after a setup failed while others were up), and what a failed setup
 * means for the waiting messages. Separate from the session set and the dispatch: this is the
 * pool's memory of how the relay answered its setups.
 *
 * Trusts: the session set's count. Failure: a failed setup fails the waiting messages when no
 * other session is up (relay down or misconfigured: the queue retries them with backoff).
 */
import type { SessionSet } from "./relay-pool-session-set.ts";
import { advertisedSize, newSession, setUpSession, type Session, type SessionSetupEvents } from "./relay-pool-session.ts";
import type { RelayPoolOptions } from "./relay-pool-types.ts";

/** See RelayPoolOptions.setupRetryMs. */
export const SETUP_RETRY_MS = 5_000;

/** What the opener needs from the pool. */
export interface OpenerPool {
  /** The session can take the next message (or is retired). */
  release(s: Session): void;
  /** Hand waiting messages to sessions. */
  dispatch(): void;
  /** The relay is down: every waiting message fails with `error` (MessageQueue.failAll). */
  failAll(error: unknown): void;
}

export interface SessionOpener {
  /** Whether another session may open, `opening` of the set's being set up, with `waiting` messages. */
  mayOpen(opening: number, waiting: number): boolean;
  /** Opens a session: it joins the set now, and reaches the pool through release once set up. */
  open(): void;
  /** A session failed before it was usable, or the relay failed on one (421, no reply). */
  setupFailed(s: Session, err: unknown): void;
}

export function createSessionOpener(opts: RelayPoolOptions, sessions: SessionSet, pool: OpenerPool): SessionOpener {
  const setupRetryMs = opts.setupRetryMs ?? SETUP_RETRY_MS;
  /** See setupFailed: while now is before this, sessions that work are all the pool uses. */
  let openBlockedUntil = 0;
  /**
   * Whether a session got through setup (connect … AUTH) since the pool started or a setup last
   * failed. Until then one session sets up at a time: with a wrong password the waiting messages
   * cost one refused login, not one each (Gmail and SES lock an account after a few), however
   * slow the relay's answer is; a dead relay, one connection attempt.
   */
  let proven = false;
  const events: SessionSetupEvents = { ready, failed: setupFailed, lostIdle: sessions.drop };

  function ready(s: Session): void {
    proven = true;
    opts.onSessionReady?.(advertisedSize(s));
    pool.release(s);
  }

  /**
   * A session failed before it was usable. With another one up or still opening, the waiting
   * messages wait for it and no new session is opened for a while (else a relay capping its
   * connections below ours is hit in a tight connect-421 loop); with none, they fail (the relay
   * is down or refuses us: the queue retries them with backoff).
   */
  function setupFailed(s: Session, err: unknown): void {
    // A refused login leaves a sound session: say QUIT. Anything else broke it.
    if ((err as { code?: unknown } | null)?.code === "EAUTH") void sessions.retire(s);
    else sessions.drop(s);
    proven = false;
    if (sessions.size() > 0) openBlockedUntil = performance.now() + setupRetryMs;
    else pool.failAll(err);
    pool.dispatch();
  }

  return {
    mayOpen(opening, waiting) {
      const open = sessions.size();
      if (open >= opts.maxConnections || opening >= waiting) return false;
      if (open > 0 && performance.now() < openBlockedUntil) return false;
      if (!proven && opening > 0) return false;
      return true;
    },
    open() {
      const s = newSession(opts.connection);
      sessions.add(s);
      setUpSession(s, opts.auth, events);
    },
    setupFailed,
  };
}
