/**
 * Spool files whose removal failed after their message was done (the spool directory read-only
 * or immutable for a while): tried again on a backoff, 5 s doubling to 10 min, through a
 * `release` that checks the database first. Only logged, such a file stayed in the spool until
 * the next start's recovery. Shared by the finisher (act/finish.ts) and the delivery side
 * (queue/attempt-runner.ts), which each remove files of their own.
 *
 * Failure: never throws; each failed try is logged with when the next comes. After stop(), no
 * more tries (the next start's recovery releases what is left).
 */
import { describeError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";

/** First wait before a removal is tried again; doubles up to REMOVE_RETRY_MAX_MS. */
export const REMOVE_RETRY_MS = 5_000;
const REMOVE_RETRY_MAX_MS = 10 * 60_000;

export interface RemovalRetry {
  /** The removal of `id`'s file failed with `err`: try again later. */
  failed(id: string, err: unknown): void;
  /** No more tries; pending timers are cleared. */
  stop(): void;
}

/** `what` names the files in the log line ("a delivered message's", "a finished message's"). */
export function createRemovalRetry(logger: Logger, what: string, release: (id: string) => Promise<unknown>): RemovalRetry {
  const timers = new Set<ReturnType<typeof setTimeout>>();
  let stopped = false;
  const later = (id: string, err: unknown, waitMs: number): void => {
    if (stopped) return;
    logger.warn(`removing ${what} spool file failed, will retry`, { id, error: describeError(err), retry_in_ms: waitMs });
    const timer = setTimeout(() => {
      timers.delete(timer);
      release(id).catch((again: unknown) => later(id, again, Math.min(waitMs * 2, REMOVE_RETRY_MAX_MS)));
    }, waitMs);
    timer.unref();
    timers.add(timer);
  };
  return {
    failed: (id, err) => later(id, err, REMOVE_RETRY_MS),
    stop() {
      stopped = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
    },
  };
}
