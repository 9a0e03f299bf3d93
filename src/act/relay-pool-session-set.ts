/**
 * The relay pool's open and opening sessions (relay-pool.ts), which of them can take a message,
 * and how one leaves the set: dropped (closed at once, its state unknown or broken) or retired
 * (QUIT, RFC 5321 4.1.1.10). Separate from the scheduling: the pool decides when a session
 * opens, takes a message or ends; this set only keeps the count and does the ending.
 *
 * Trusts: the pool to add each session once. Failure: none; a QUIT left unanswered closes the
 * socket after QUIT_TIMEOUT_MS.
 */
import type { Session } from "./relay-pool-session.ts";

/** How long an ending session waits for the reply to its QUIT before the socket is closed anyway. */
export const QUIT_TIMEOUT_MS = 2_000;

export interface SessionSet {
  /** Open or opening sessions. */
  size(): number;
  add(s: Session): void;
  /** A set-up session with no message and no RSET pending, or null. */
  idle(): Session | null;
  /** Sessions still being set up. */
  opening(): number;
  /** Closes a session whose state is unknown or broken (nothing more may be sent on it). */
  drop(s: Session): void;
  /** Ends an idle, healthy session: QUIT, and close on its reply (or after QUIT_TIMEOUT_MS). */
  retire(s: Session): Promise<void>;
  /** The session waits for a message: retired after `idleTimeoutMs` without one. */
  keepIdle(s: Session, idleTimeoutMs: number): void;
  /** Ends the sessions with no message (one still opening is closed); busy ones are left to the pool. */
  closeIdle(): Promise<unknown>;
}

export function createSessionSet(): SessionSet {
  const sessions = new Set<Session>();

  /** Takes the session out of the pool; true if it was still in. */
  function remove(s: Session): boolean {
    if (s.gone) return false;
    s.gone = true;
    if (s.idleTimer) clearTimeout(s.idleTimer);
    sessions.delete(s);
    return true;
  }

  function drop(s: Session): void {
    if (remove(s)) s.smtp.close();
  }

  function retire(s: Session): Promise<void> {
    if (!remove(s)) return Promise.resolve();
    if (s.smtp.destroyed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        s.smtp.close();
        resolve();
      }, QUIT_TIMEOUT_MS);
      s.smtp.once("end", () => {
        clearTimeout(timer);
        resolve();
      });
      s.smtp.quit();
    });
  }

  return {
    size: () => sessions.size,
    add: (s) => void sessions.add(s),
    idle() {
      for (const s of sessions) if (s.ready && s.current === null && !s.resetting) return s;
      return null;
    },
    opening() {
      let opening = 0;
      for (const s of sessions) if (!s.ready) opening++;
      return opening;
    },
    drop,
    retire,
    keepIdle(s, idleTimeoutMs) {
      if (s.idleTimer) s.idleTimer.refresh();
      // Not while its RSET is on the wire: a message may be waiting for this session (the pool
      // at its limit), and RSET's reply re-arms the timer through release().
      else s.idleTimer = setTimeout(() => s.current === null && !s.resetting && void retire(s), idleTimeoutMs).unref();
    },
    closeIdle() {
      // One still opening has no reply to wait for yet: closed. Busy ones retire after their message.
      const idle = [...sessions].filter((s) => s.current === null);
      for (const s of idle) if (!s.ready) drop(s);
      return Promise.all(idle.map(retire));
    },
  };
}
