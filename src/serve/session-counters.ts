/**
 * The `session` / `session_tls` daily counters (metrics and stats page) of sessions that handed
 * over no message (a session that did was counted in its first message's commit, so a crash
 * never leaves more messages counted than sessions), batched: counted in memory and written in
 * one small transaction per FLUSH_INTERVAL_MS, so a flood of short connections (scanners,
 * refused relaying) does not cost one SQLite commit each. With a delivery thread (`offload`),
 * the counts are handed to it and committed on its connection: a write on the event loop
 * waits as long as the disk does (a WAL write blocked 23 s behind the syncfs of big messages on
 * a slow disk, and for good on a frozen file system), and every session and /healthz with it.
 * Without one, the write runs on the event loop, so it neither fsyncs (the next synced commit
 * covers it) nor waits for the write lock: while another connection holds it, the counts simply
 * wait for the next flush. stop() writes what is left here (waiting for the lock and synced, as
 * shutdown may; the delivery thread has stopped by then).
 * Failure: a failed write is logged and the counts are kept for the next flush. At most a few
 * intervals of these counts are lost on a crash (statistics only, never mail).
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

/** Hands counts to another thread that commits them; false when it cannot take them now. */
export type SessionCountsOffload = (at: number, sessions: number, tls: number) => boolean;

export function createSessionCounters(db: Database, logger: Logger, now: () => number = Date.now, offload: SessionCountsOffload | null = null): SessionCounters {
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
      if (!wait && offload?.(now(), s, t)) {
        sessions -= s;
        tlsSessions -= t;
        return;
      }
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
