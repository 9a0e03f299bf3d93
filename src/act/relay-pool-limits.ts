/**
 * When the relay pool (relay-pool.ts) may open one more session: never past maxConnections or
 * beyond the messages waiting; one setup at a time until a session got through; none for a
 * while after a setup failed while others were up. Separate from the session set: this is the
 * pool's memory of how the relay answered its setups, not a list of sessions.
 *
 * Trusts: the pool's counts. Failure: none.
 */

/** See RelayPoolOptions.setupRetryMs. */
export const SETUP_RETRY_MS = 5_000;

export interface OpenLimits {
  /** Whether another session may open, with `open` sessions (`opening` of them in setup) and `waiting` messages. */
  mayOpen(open: number, opening: number, waiting: number): boolean;
  /** A session got through setup. */
  setUp(): void;
  /** A session failed its setup; `othersUp`: other sessions are open or opening, the messages wait for them. */
  setupFailed(othersUp: boolean): void;
}

export function createOpenLimits(opts: { maxConnections: number; setupRetryMs?: number | undefined }): OpenLimits {
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

  return {
    mayOpen(open, opening, waiting) {
      if (open >= opts.maxConnections || opening >= waiting) return false;
      if (open > 0 && performance.now() < openBlockedUntil) return false;
      if (!proven && opening > 0) return false;
      return true;
    },
    setUp() {
      proven = true;
    },
    setupFailed(othersUp) {
      proven = false;
      // No new session for a while: a relay capping its connections below ours would be hit in a
      // tight connect-421 loop.
      if (othersUp) openBlockedUntil = performance.now() + setupRetryMs;
    },
  };
}
