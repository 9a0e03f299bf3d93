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
import { createThreadRestarts, type ThreadRestarts } from "./thread-restarts.ts";
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
  return new ThreadHost(opts);
}

class ThreadHost implements DeliveryThreadHost {
  private thread: Worker | null = null;
  /**
   * A thread being launched, from its init on: it counts as running only once it started, but a
   * relay reload meanwhile must reach it, or it keeps the relay of its init until the next SIGHUP.
   */
  private starting: Worker | null = null;
  private isStopping = false;
  private attemptsInFlight = 0;
  private onStopped: (() => void) | null = null;
  private readonly restartsOf: ThreadRestarts;

  constructor(private readonly opts: DeliveryThreadHostOptions) {
    this.restartsOf = createThreadRestarts({
      logger: opts.logger,
      baseDelayMs: opts.restartDelayMs,
      launch: () => this.launch(),
      attach: (t) => this.attach(t),
      stopping: () => this.isStopping,
    });
  }

  async start(): Promise<string | null> {
    const launched = await this.launch();
    if ("reason" in launched) return launched.reason;
    this.attach(launched.thread);
    return null;
  }

  async stop(): Promise<void> {
    this.isStopping = true;
    // A restart waiting for its launch (at most START_TIMEOUT_MS) attaches its thread first.
    await this.restartsOf.cancel();
    const t = this.thread;
    if (t === null) return;
    const stopped = new Promise<void>((resolve) => {
      this.onStopped = resolve;
    });
    const limit = setTimeout(() => this.onStopped?.(), STOP_GRACE_MS + STOP_MARGIN_MS);
    t.postMessage({ kind: "stop" } satisfies ThreadRequest);
    await stopped;
    clearTimeout(limit);
    this.thread = null;
    t.terminate();
  }

  send(req: ThreadRequest): void {
    (this.thread ?? this.starting)?.postMessage(req);
  }

  running(): boolean {
    return this.thread !== null;
  }

  stopping(): boolean {
    return this.isStopping;
  }

  inFlight(): number {
    return this.attemptsInFlight;
  }

  restarts(): number {
    return this.restartsOf.count();
  }

  private onReply(reply: ThreadReply): void {
    if (reply.kind === "logs") {
      this.attemptsInFlight = reply.inFlight;
      for (const r of reply.records) this.opts.logger[r.level](r.msg, r.fields);
    } else if (reply.kind === "stopped") {
      this.attemptsInFlight = 0;
      this.onStopped?.();
    }
  }

  private async launch(): Promise<ThreadLaunch> {
    const launched = await launchDeliveryThread(this.opts.specifier, this.opts.config, (reply) => this.onReply(reply), (t) => (this.starting = t));
    this.starting = null;
    return launched;
  }

  private attach(t: Worker): void {
    this.thread = t;
    this.restartsOf.began();
    t.onmessage = (event: MessageEvent<ThreadReply>) => this.onReply(event.data);
    t.onerror = (event) => this.died(t, `uncaught error: ${event.message}`);
    t.addEventListener("close", () => this.died(t, "the thread exited"));
  }

  private died(t: Worker, reason: string): void {
    if (this.thread !== t) return;
    this.thread = null;
    this.attemptsInFlight = 0;
    t.terminate();
    if (this.isStopping) this.onStopped?.();
    else this.restartsOf.crashed(reason);
  }
}
