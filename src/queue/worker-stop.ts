/**
 * The delivery worker's stop (worker.ts) in two steps: requested at once (a result commit that
 * keeps failing is given up, its row left for the next start: persistent-write.ts), then, if
 * attempts still run when the grace period is over, cut (they are aborted, and attempt-runner.ts
 * makes them due at the next start). Apart from the worker because the attempts and the commits
 * watch these signals while only stop() fires them.
 *
 * Trusts: nothing. Failure: none.
 */

export interface WorkerStop {
  /** Aborted as soon as the stop begins (`cut` only after the grace period). */
  readonly requested: AbortSignal;
  /** Aborted once the grace period is over with attempts still running. */
  readonly cut: AbortSignal;
  /** Fires `requested`, then `cut` unless `settled()` resolves within the grace period. */
  run(settled: () => Promise<unknown>): Promise<void>;
}

export function createWorkerStop(graceMs: number): WorkerStop {
  const stopRequested = new AbortController();
  const stopController = new AbortController();
  return {
    requested: stopRequested.signal,
    cut: stopController.signal,
    async run(settled) {
      stopRequested.abort();
      const graceTimer = setTimeout(() => stopController.abort(new Error("mailgw is stopping")), graceMs);
      await settled();
      clearTimeout(graceTimer);
    },
  };
}
