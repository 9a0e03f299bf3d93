/**
 * Wrong STATS_TOKEN guesses per client (IPv4 address or IPv6 /64, as the SMTP rate limit counts
 * them): past WRONG_TOKENS_PER_WINDOW in a window, the client's requests for the guarded paths
 * get 429 without their token being looked at, until the window ends; the log says so.
 *
 * Why: nothing slowed guesses down and nothing was logged. One client on loopback made ~50,000
 * guesses a second (a 3-character token found in 0.7 s, 6 characters within a day), and the log
 * had not a line of it. The right token from the same address is refused too while it is locked:
 * answering it would tell the guesser when it is right, which is all the lock withholds.
 *
 * Trusts: nothing. Memory is bounded (MAX_TRACKED clients; an attacker with many addresses makes
 * the oldest windows be forgotten, each of which had to send its own guesses). Timed with the
 * monotonic clock. Failure: none (pure bookkeeping plus log lines).
 */
import type { Logger } from "../log/logger.ts";
import { clientKey } from "../smtp/ip.ts";

/** Wrong tokens one client may send per window: a person mistyping it in a browser stays far below. */
export const WRONG_TOKENS_PER_WINDOW = 10;
/** The window, and so the longest a locked client waits. */
export const WRONG_TOKEN_WINDOW_MS = 60_000;
/** Clients remembered at once: bounds memory under guesses from many addresses. */
const MAX_TRACKED = 10_000;

interface Window {
  startedAt: number;
  wrong: number;
}

export interface WrongTokens {
  /** Seconds until the client may ask again, or 0 when it is not locked. */
  lockedFor(address: string | null): number;
  /** Counts a wrong (not missing) token from the client. */
  noteWrong(address: string | null): void;
}

/** `limit`: wrong tokens per window (tests of the token parsing raise it). */
export function createWrongTokens(logger: Logger, limit = WRONG_TOKENS_PER_WINDOW, now: () => number = () => performance.now()): WrongTokens {
  const windows = new Map<string, Window>();
  const key = (address: string | null): string => clientKey(address ?? "");
  const ended = (w: Window, t: number): boolean => t - w.startedAt >= WRONG_TOKEN_WINDOW_MS || t < w.startedAt;
  const live = (k: string, t: number): Window | undefined => {
    const w = windows.get(k);
    if (w && ended(w, t)) windows.delete(k);
    return w && !ended(w, t) ? w : undefined;
  };
  return {
    lockedFor(address) {
      const t = now();
      const w = live(key(address), t);
      if (!w || w.wrong < limit) return 0;
      return Math.max(1, Math.ceil((w.startedAt + WRONG_TOKEN_WINDOW_MS - t) / 1000));
    },
    noteWrong(address) {
      const t = now();
      const k = key(address);
      let w = live(k, t);
      if (!w) {
        // Windows are added as they start: the oldest lead, and go first when the table is full.
        for (const old of windows.keys()) {
          if (windows.size < MAX_TRACKED) break;
          windows.delete(old);
        }
        w = { startedAt: t, wrong: 0 };
        windows.set(k, w);
      }
      w.wrong++;
      // One line per client and window, when it is locked: a guesser is seen (and fail2ban can act).
      if (w.wrong === limit) {
        logger.warn("stats: too many wrong STATS_TOKEN guesses; this client's requests get 429 until its window ends", {
          client: address ?? "unknown",
          wrong_tokens: w.wrong,
          window_seconds: WRONG_TOKEN_WINDOW_MS / 1000,
        });
      }
    },
  };
}
