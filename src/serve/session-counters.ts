/**
 * The `refused:<reason>` daily counters (smtp/refusals.ts), and the `session` / `session_tls`
 * ones (metrics and stats page) of sessions that handed
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
import type { RefusalReason } from "../smtp/refusals.ts";
import { tryCommitWithoutWaiting } from "../spool/wal-sync.ts";
import { addSessionCounts, bumpSessionCounts, emptySessionCounts, hasSessionCounts, type SessionCounts } from "../store/counters.ts";

/** Stats readers see a session at most this long after it ended. */
export const FLUSH_INTERVAL_MS = 2000;

export interface SessionCounters {
  count(tls: boolean): void;
  refused(reason: RefusalReason): void;
  start(): void;
  stop(): void;
}

/** Hands counts to another thread that commits them; false when it cannot take them now. */
export type SessionCountsOffload = (at: number, counts: SessionCounts) => boolean;

export function createSessionCounters(db: Database, logger: Logger, now: () => number = Date.now, offload: SessionCountsOffload | null = null): SessionCounters {
  const counts = emptySessionCounts();
  let timer: ReturnType<typeof setInterval> | null = null;
  const flush = (wait: boolean): void => {
    if (!hasSessionCounts(counts)) return;
    const taken = structuredClone(counts);
    const write = (): void => bumpSessionCounts(db, now(), taken);
    try {
      if (!wait && offload?.(now(), taken)) {
        addSessionCounts(counts, taken, -1);
        return;
      }
      if (wait) db.transaction(write).immediate();
      else if (!tryCommitWithoutWaiting(db, write)) return; // the lock is busy: next time
      addSessionCounts(counts, taken, -1);
    } catch (err) {
      logger.error("writing session counters failed; kept for the next try", { error: describeError(err) });
    }
  };
  return {
    count(tls) {
      counts.sessions++;
      if (tls) counts.tls++;
    },
    refused(reason) {
      counts.refused[reason] = (counts.refused[reason] ?? 0) + 1;
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
