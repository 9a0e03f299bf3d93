/**
 * Per-client message rate limit (RATE_LIMIT_MAX messages per RATE_LIMIT_WINDOW_MS), checked
 * at MAIL FROM. Fixed windows per client key (IPv4 address or IPv6 /64, see ip.ts).
 *
 * Memory is bounded: at most `maxTracked` clients are remembered. When the table is full,
 * expired windows are swept first, then the oldest entries are evicted (a Map keeps
 * insertion order, which is the order the windows started). Eviction can only forget a client's count — it errs towards letting a
 * client through again, never towards refusing one that is under the limit.
 * Windows are timed with the monotonic clock: a wall clock stepped back (NTP correcting a
 * clock that was ahead, an RTC kept in local time) left every window "not over yet" until the
 * wall clock caught up, so a client at its limit got 451 for hours. A clock passed in (tests)
 * that goes back ends the window too: the error is on the side of letting a client through.
 */

export interface RateLimiter {
  /** Counts one message for the client; false when the client is over its limit. */
  take(key: string): boolean;
  /** Clients currently tracked (for tests and metrics). */
  size(): number;
}

interface Window {
  startedAt: number;
  count: number;
}

export function createRateLimiter(opts: {
  max: number;
  windowMs: number;
  maxTracked: number;
  now?: () => number;
}): RateLimiter {
  const now = opts.now ?? (() => performance.now());
  const over = (w: Window, t: number): boolean => t - w.startedAt >= opts.windowMs || t < w.startedAt;
  const windows = new Map<string, Window>();

  // A window is added when it starts (one that ended is deleted, and the client's next window
  // added anew), so the Map holds them oldest first and the expired ones lead. Sweeping stops at
  // the first live window once there is room: a sweep of the whole table for every new client
  // cost ~0.4 ms of the event loop per MAIL FROM once 50,000 live clients filled it.
  const makeRoom = (t: number): void => {
    for (const [key, w] of windows) {
      if (!over(w, t) && windows.size < opts.maxTracked) return;
      windows.delete(key);
    }
  };

  return {
    take(key) {
      const t = now();
      let w = windows.get(key);
      if (w && over(w, t)) {
        windows.delete(key);
        w = undefined;
      }
      if (!w) {
        if (windows.size >= opts.maxTracked) makeRoom(t);
        w = { startedAt: t, count: 0 };
        windows.set(key, w);
      }
      if (w.count >= opts.max) return false;
      w.count++;
      return true;
    },
    size: () => windows.size,
  };
}
