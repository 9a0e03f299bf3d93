/**
 * How the delivery worker (worker.ts) records an attempt's result, or a forward held again: the
 * write is tried until the database takes it (disk full, the write lock held past busy_timeout),
 * with a doubling wait, so the row does not stay `delivering` until a restart. Apart from the
 * attempt because it is the one place that decides between retrying and giving the row up to
 * the next start.
 *
 * Trusts: nothing. Failure: gives up (null) only once the worker is stopping: the row stays
 * `delivering`, which the next start queues again (at-least-once).
 */
import type { Logger } from "../log/logger.ts";
import type { ClaimedDelivery } from "./queue-store.ts";

/** First wait before committing an attempt's result again after the commit failed; doubles. */
export const RECORD_RETRY_MS = 1_000;
const RECORD_RETRY_MAX_MS = 30_000;

/** Runs `write` until the database takes it; null when the worker is stopping and it still fails. */
export type PersistentWrite = <T>(what: string, d: ClaimedDelivery, write: () => T | Promise<T>) => Promise<T | null>;

export interface PersistentWriteOptions {
  logger: Logger;
  /** The first wait (default RECORD_RETRY_MS in worker.ts). */
  firstWaitMs: number;
  /** Aborted as soon as the worker's stop() is called: ends a wait, and the retries. */
  stopRequested: AbortSignal;
}

export function createPersistentWrite(opts: PersistentWriteOptions): PersistentWrite {
  const { logger, firstWaitMs, stopRequested } = opts;
  return async function persistently<T>(what: string, d: ClaimedDelivery, write: () => T | Promise<T>): Promise<T | null> {
    for (let wait = firstWaitMs; ; wait = Math.min(wait * 2, RECORD_RETRY_MAX_MS)) {
      try {
        return await write();
      } catch (err) {
        if (stopRequested.aborted) return null;
        logger.error(`${what} could not be recorded; retrying`, { id: d.messageId, delivery: d.id, error: err instanceof Error ? err.message : String(err), retry_in_ms: wait });
        await new Promise<void>((resolve) => {
          const done = (): void => {
            clearTimeout(timer);
            stopRequested.removeEventListener("abort", done);
            resolve();
          };
          const timer = setTimeout(done, wait);
          stopRequested.addEventListener("abort", done);
        });
      }
    }
  };
}
