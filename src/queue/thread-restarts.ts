/**
 * Replacing a crashed delivery thread (threaded-worker.ts): a new one is launched after a delay
 * that doubles, up to RESTART_DELAY_CAP_MS, while threads keep dying, and starts over from the
 * first delay once a thread ran STABLE_AFTER_MS. Each crash and each failed restart is logged as
 * an error. Apart from the thread's attachment because this is the policy of when to try again,
 * with its own timer and counters.
 *
 * Trusts: `launch`. Failure: a launch that fails is retried after the next delay, for as long as
 * serve runs.
 */
import type { Logger } from "../log/logger.ts";
import type { ThreadLaunch } from "./thread-launch.ts";

/** First wait before a crashed thread is replaced; doubles while it keeps crashing. */
export const RESTART_DELAY_MS = 1000;
/** Longest wait between restarts: a crash loop is retried (and logged) every 30 s at most. */
export const RESTART_DELAY_CAP_MS = 30_000;
/** A thread that ran this long without dying resets the restart delay. */
const STABLE_AFTER_MS = 60_000;

export interface ThreadRestartsOptions {
  logger: Logger;
  /** The first delay (default RESTART_DELAY_MS). */
  baseDelayMs: number;
  launch: () => Promise<ThreadLaunch>;
  /** Takes a restarted thread into use. */
  attach: (thread: Worker) => void;
  /** serve is stopping: no thread is started; one started meanwhile is attached, for the stop. */
  stopping: () => boolean;
}

export interface ThreadRestarts {
  /** A thread runs from now (how long it runs decides whether the delay starts over). */
  began(): void;
  /** The running thread died while serve runs: logged, and a new one launched after the delay. */
  crashed(reason: string): void;
  /**
   * serve stops: a pending restart is dropped. Resolves once a launch already under way ended,
   * its thread attached: that thread may have claimed deliveries at its start, so the stop must
   * end it like a running one (attempts get the grace, relay sessions their QUIT), not cut it.
   */
  cancel(): Promise<void>;
  /** Threads replaced after a crash. */
  count(): number;
}

export function createThreadRestarts(opts: ThreadRestartsOptions): ThreadRestarts {
  const { logger, baseDelayMs, launch, attach, stopping } = opts;
  let restarts = 0;
  let delay = baseDelayMs;
  let startedAt = 0;
  let restartTimer: ReturnType<typeof setTimeout> | null = null;
  /** The latest restart, from its timer on (what cancel() waits for). */
  let restarting: Promise<void> = Promise.resolve();

  function schedule(): void {
    restartTimer = setTimeout(() => {
      restarting = restart();
    }, delay);
    delay = Math.min(delay * 2, RESTART_DELAY_CAP_MS);
  }

  async function restart(): Promise<void> {
    restartTimer = null;
    if (stopping()) return;
    const launched = await launch();
    if (stopping()) {
      // Not terminated here: it may have claimed deliveries at its start (see cancel()).
      if ("thread" in launched) attach(launched.thread);
      return;
    }
    if ("reason" in launched) {
      logger.error("delivery thread did not restart; trying again", { reason: launched.reason, restart_in_ms: delay });
      schedule();
      return;
    }
    restarts++;
    attach(launched.thread);
    logger.warn("delivery thread restarted", { restarts });
  }

  return {
    began() {
      startedAt = performance.now();
    },
    crashed(reason) {
      if (performance.now() - startedAt > STABLE_AFTER_MS) delay = baseDelayMs;
      logger.error("delivery thread crashed; starting a new one", { reason, restart_in_ms: delay });
      schedule();
    },
    cancel() {
      if (restartTimer) clearTimeout(restartTimer);
      return restarting;
    },
    count: () => restarts,
  };
}
