/**
 * The main thread's side of the delivery thread (delivery-thread.ts) for threaded-worker.ts: the
 * thread that runs now, its replies (log records written by `logger`, the attempts in flight),
 * its death (thread-restarts.ts replaces it) and its stop. Apart from threaded-worker.ts, which
 * picks between this thread and the in-thread fallback and coalesces intake's wake-ups.
 *
 * Trusts: the thread is this build (thread-protocol.ts). Failure: a thread that does not answer
 * a stop within STOP_GRACE_MS + STOP_MARGIN_MS is terminated; its `delivering` rows are queued
 * again by the next start (at-least-once).
 */
import type { Config } from "../config/config.ts";
import type { Logger } from "../log/logger.ts";
import { launchDeliveryThread, type ThreadLaunch } from "./thread-launch.ts";
import type { ThreadReply, ThreadRequest } from "./thread-protocol.ts";
import { createThreadRestarts } from "./thread-restarts.ts";
import { STOP_GRACE_MS } from "./worker.ts";

/** On stop, how long past the attempts' own grace the thread may take to answer. */
const STOP_MARGIN_MS = 5000;

export interface DeliveryThreadHostOptions {
  logger: Logger;
  /** Worker module of the thread. */
  specifier: string;
  /** The Config a new thread starts with (read when it asks for it). */
  config: () => Config;
  /** First wait before a crashed thread is replaced. */
  restartDelayMs: number;
}

export interface DeliveryThreadHost {
  /** Launches the thread: null once it runs, else why it did not start. */
  start(): Promise<string | null>;
  /**
   * No restarts from now on; a running thread, or one a restart is launching (once started), is
   * asked to stop (bounded), then terminated.
   */
  stop(): Promise<void>;
  /** Posts to the running thread, or to one starting that has its Config; dropped when neither. */
  send(req: ThreadRequest): void;
  running(): boolean;
  stopping(): boolean;
  /** The attempts in flight the thread last reported. */
  inFlight(): number;
  /** Threads replaced after a crash. */
  restarts(): number;
}

export function createDeliveryThreadHost(opts: DeliveryThreadHostOptions): DeliveryThreadHost {
  const { logger } = opts;
  let thread: Worker | null = null;
  /**
   * A thread being launched, from its init on: it counts as running only once it started, but a
   * relay reload meanwhile must reach it, or it keeps the relay of its init until the next SIGHUP.
   */
  let starting: Worker | null = null;
  let stopping = false;
  let inFlight = 0;
  let onStopped: (() => void) | null = null;

  function onReply(reply: ThreadReply): void {
    if (reply.kind === "logs") {
      inFlight = reply.inFlight;
      for (const r of reply.records) logger[r.level](r.msg, r.fields);
    } else if (reply.kind === "stopped") {
      inFlight = 0;
      onStopped?.();
    }
  }

  async function launch(): Promise<ThreadLaunch> {
    const launched = await launchDeliveryThread(opts.specifier, opts.config, onReply, (t) => (starting = t));
    starting = null;
    return launched;
  }

  const restarts = createThreadRestarts({ logger, baseDelayMs: opts.restartDelayMs, launch, attach, stopping: () => stopping });

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
    if (stopping) onStopped?.();
    else restarts.crashed(reason);
  }

  return {
    async start() {
      const launched = await launch();
      if ("reason" in launched) return launched.reason;
      attach(launched.thread);
      return null;
    },
    async stop() {
      stopping = true;
      // A restart waiting for its launch (at most START_TIMEOUT_MS) attaches its thread first.
      await restarts.cancel();
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
    send: (req) => (thread ?? starting)?.postMessage(req),
    running: () => thread !== null,
    stopping: () => stopping,
    inFlight: () => inFlight,
    restarts: restarts.count,
  };
}
