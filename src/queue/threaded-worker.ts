/**
 * The delivery worker of `mailgw serve` in its own thread (delivery-thread.ts), behind the
 * same DeliveryWorker interface as the in-thread one (worker.ts). Intake's `wake` becomes one
 * postMessage per event-loop turn; the thread's log records are written by `logger` here.
 *
 * Crash policy: if the thread dies (uncaught exception, exit), it is restarted here after
 * RESTART_DELAY_MS (doubling up to RESTART_DELAY_CAP_MS while it keeps dying), logged as an
 * error each time. The new thread's start queues again the attempts the dead one left
 * `delivering` (at-least-once: a duplicate is possible, a loss is not). serve keeps accepting
 * mail meanwhile: intake never depends on delivery.
 * Trusts: the validated Config. Failure: a thread that does not start (no Worker support, the
 * worker file missing from a build, its database open failing) → the in-thread worker on the
 * main connection is used instead, with a warning.
 */
import type { Database } from "bun:sqlite";
import type { Config, RelayConfig } from "../config/config.ts";
import type { Logger } from "../log/logger.ts";
import type { SessionCounts } from "../store/counters.ts";
import { workerSpecifier } from "../spool/worker-url.ts";
import { createDeliveryThreadHost } from "./delivery-thread-host.ts";
import { RESTART_DELAY_MS } from "./thread-restarts.ts";
import { createDeliveryWorker, type DeliveryWorker } from "./worker.ts";

/** The thread's file, below src/ (also listed in scripts/build.ts WORKER_ENTRYPOINTS). */
export const DELIVERY_THREAD_PATH = "queue/delivery-thread.ts";
export { RESTART_DELAY_CAP_MS, RESTART_DELAY_MS } from "./thread-restarts.ts";

export interface ThreadedDeliveryWorkerOptions {
  config: Config;
  /** The main connection: used only by the in-thread fallback. */
  db: Database;
  logger: Logger;
  /** Worker module (tests use one that can be made to crash). */
  specifier?: string;
  restartDelayMs?: number;
}

export interface ThreadedDeliveryWorker extends DeliveryWorker {
  start(): Promise<void>;
  /** "thread" once the thread runs, "main" after a fallback, "none" before start. */
  mode(): "thread" | "main" | "none";
  /** Threads replaced after a crash. */
  restarts(): number;
  /**
   * Hands ended SMTP sessions to the thread, which commits their counters on its own connection;
   * false when no thread runs (the caller commits them itself).
   */
  countSessions(at: number, counts: SessionCounts): boolean;
}

export function createThreadedDeliveryWorker(opts: ThreadedDeliveryWorkerOptions): ThreadedDeliveryWorker {
  const { logger } = opts;
  let relay: RelayConfig | null = opts.config.relay;
  let fallback: DeliveryWorker | null = null;
  let wakePosted = false;
  const host = createDeliveryThreadHost({
    logger,
    specifier: opts.specifier ?? workerSpecifier(DELIVERY_THREAD_PATH),
    config: () => ({ ...opts.config, relay }),
    restartDelayMs: opts.restartDelayMs ?? RESTART_DELAY_MS,
  });

  return {
    async start() {
      if (host.running() || fallback !== null) return;
      const reason = await host.start();
      if (reason === null) {
        logger.info("deliveries run in their own thread");
        return;
      }
      logger.warn("delivery thread unavailable: delivering on the main thread", { reason });
      fallback = createDeliveryWorker({ config: { ...opts.config, relay }, db: opts.db, logger });
      fallback.start();
    },
    async stop() {
      if (host.stopping()) return;
      const threadStopped = host.stop();
      if (fallback) return fallback.stop();
      return threadStopped;
    },
    wake() {
      if (fallback) return fallback.wake();
      if (wakePosted || !host.running()) return;
      wakePosted = true;
      queueMicrotask(() => {
        wakePosted = false;
        host.send({ kind: "wake" });
      });
    },
    reloadRelay(next) {
      relay = next;
      if (fallback) fallback.reloadRelay(next);
      else host.send({ kind: "reload-relay", relay: next });
    },
    countSessions(at, counts) {
      if (!host.running() || host.stopping()) return false;
      host.send({ kind: "count-sessions", at, counts });
      return true;
    },
    inFlight: () => (fallback ? fallback.inFlight() : host.inFlight()),
    mode: () => (fallback ? "main" : host.running() ? "thread" : "none"),
    restarts: () => host.restarts(),
  };
}
