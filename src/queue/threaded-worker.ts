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
import { workerSpecifier } from "../spool/worker-url.ts";
import { launchDeliveryThread, type ThreadLaunch } from "./thread-launch.ts";
import type { ThreadReply, ThreadRequest } from "./thread-protocol.ts";
import { createThreadRestarts, RESTART_DELAY_MS } from "./thread-restarts.ts";
import { createDeliveryWorker, STOP_GRACE_MS, type DeliveryWorker } from "./worker.ts";

/** The thread's file, below src/ (also listed in scripts/build.ts WORKER_ENTRYPOINTS). */
export const DELIVERY_THREAD_PATH = "queue/delivery-thread.ts";
export { RESTART_DELAY_CAP_MS, RESTART_DELAY_MS } from "./thread-restarts.ts";
/** On stop, how long past the attempts' own grace the thread may take to answer. */
const STOP_MARGIN_MS = 5000;

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
  countSessions(at: number, sessions: number, tls: number): boolean;
}

export function createThreadedDeliveryWorker(opts: ThreadedDeliveryWorkerOptions): ThreadedDeliveryWorker {
  const { logger } = opts;
  const specifier = opts.specifier ?? workerSpecifier(DELIVERY_THREAD_PATH);
  let relay: RelayConfig | null = opts.config.relay;
  let thread: Worker | null = null;
  let fallback: DeliveryWorker | null = null;
  let stopping = false;
  let wakePosted = false;
  let inFlight = 0;
  let onStopped: (() => void) | null = null;

  const send = (req: ThreadRequest): void => thread?.postMessage(req);

  function onReply(reply: ThreadReply): void {
    if (reply.kind === "logs") {
      inFlight = reply.inFlight;
      for (const r of reply.records) logger[r.level](r.msg, r.fields);
    } else if (reply.kind === "stopped") {
      inFlight = 0;
      onStopped?.();
    }
  }

  const launch = (): Promise<ThreadLaunch> => launchDeliveryThread(specifier, () => ({ ...opts.config, relay }), onReply);
  const restarts = createThreadRestarts({ logger, baseDelayMs: opts.restartDelayMs ?? RESTART_DELAY_MS, launch, attach, stopping: () => stopping });

  function attach(t: Worker): void {
    thread = t;
    restarts.began();
    t.onmessage = (event: MessageEvent<ThreadReply>) => onReply(event.data);
    t.onerror = (event) => died(t, `uncaught error: ${event.message}`);
    t.addEventListener("close", () => died(t, "the thread exited"));
  }

  function died(t: Worker, reason: string): void {
    if (thread !== t) return;
    thread = null;
    inFlight = 0;
    t.terminate();
    if (stopping) {
      onStopped?.();
      return;
    }
    restarts.crashed(reason);
  }

  return {
    async start() {
      if (thread !== null || fallback !== null) return;
      const launched = await launch();
      if ("thread" in launched) {
        attach(launched.thread);
        logger.info("deliveries run in their own thread");
        return;
      }
      logger.warn("delivery thread unavailable: delivering on the main thread", { reason: launched.reason });
      fallback = createDeliveryWorker({ config: { ...opts.config, relay }, db: opts.db, logger });
      fallback.start();
    },
    async stop() {
      if (stopping) return;
      stopping = true;
      restarts.cancel();
      if (fallback) return fallback.stop();
      const t = thread;
      if (t === null) return;
      const stopped = new Promise<void>((resolve) => {
        onStopped = resolve;
      });
      const limit = setTimeout(() => onStopped?.(), STOP_GRACE_MS + STOP_MARGIN_MS);
      t.postMessage({ kind: "stop" } satisfies ThreadRequest);
      await stopped;
      clearTimeout(limit);
      thread = null;
      t.terminate();
    },
    wake() {
      if (fallback) return fallback.wake();
      if (wakePosted || thread === null) return;
      wakePosted = true;
      queueMicrotask(() => {
        wakePosted = false;
        send({ kind: "wake" });
      });
    },
    reloadRelay(next) {
      relay = next;
      if (fallback) fallback.reloadRelay(next);
      else send({ kind: "reload-relay", relay: next });
    },
    countSessions(at, sessions, tls) {
      if (thread === null || stopping) return false;
      send({ kind: "count-sessions", at, sessions, tls });
      return true;
    },
    inFlight: () => (fallback ? fallback.inFlight() : inFlight),
    mode: () => (fallback ? "main" : thread ? "thread" : "none"),
    restarts: restarts.count,
  };
}
