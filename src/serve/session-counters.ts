/**
 * The `session` / `session_tls` daily counters (metrics and stats page), batched: sessions are
 * counted in memory and written in one small transaction per FLUSH_INTERVAL_MS, so a flood of
 * short connections does not cost one SQLite commit each. The write runs on the event loop, so
 * it neither fsyncs (the next synced commit covers it) nor waits for the write lock: while
 * another connection holds it, the counts simply wait for the next flush. stop() writes what
 * is left (waiting for the lock and synced, as shutdown may).
 * Failure: a failed write is logged and the counts are kept for the next flush. At most a few
 * intervals of counts are lost on a crash (statistics only, never mail).
 */
import type { Database } from "bun:sqlite";
import { describeError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import { tryCommitWithoutWaiting } from "../spool/wal-sync.ts";
import { bumpCounter } from "../store/counters.ts";

/** Stats readers see a session at most this long after it ended. */
export const FLUSH_INTERVAL_MS = 2000;

export interface SessionCounters {
  count(tls: boolean): void;
  start(): void;
  stop(): void;
}

export function createSessionCounters(db: Database, logger: Logger, now: () => number = Date.now): SessionCounters {
  let sessions = 0;
  let tlsSessions = 0;
  let timer: ReturnType<typeof setInterval> | null = null;
  const flush = (wait: boolean): void => {
    if (sessions === 0 && tlsSessions === 0) return;
    const [s, t] = [sessions, tlsSessions];
    const write = (): void => {
      if (s > 0) bumpCounter(db, now(), "session", {}, s);
      if (t > 0) bumpCounter(db, now(), "session_tls", {}, t);
    };
    try {
      if (wait) db.transaction(write).immediate();
      else if (!tryCommitWithoutWaiting(db, write)) return; // the lock is busy: next time
      sessions -= s;
      tlsSessions -= t;
    } catch (err) {
      logger.error("writing session counters failed; kept for the next try", { error: describeError(err) });
    }
  };
  return {
    count(tls) {
      sessions++;
      if (tls) tlsSessions++;
    },
    start() {
      timer ??= setInterval(() => flush(false), FLUSH_INTERVAL_MS);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = null;
      flush(true);
    },
  };
}
