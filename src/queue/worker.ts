/**
 * The delivery worker inside `mailgw serve` (SPEC §5): claims due deliveries from SQLite,
 * runs attempts with bounded concurrency, records each attempt and the next state.
 *
 * Scheduling: woken by intake (`wake()`), by finished attempts, and by a short poll (which
 * also notices `mailgw queue retry` from another process). At most MAX_IN_FLIGHT attempts
 * run at once; forwards share the relay's cap, webhooks their own share, and each webhook URL
 * has its own cap (one slot until a post to it gets an answer, and while its last attempt failed
 * for now), so one slow or stalled target never takes every slot; at most MAX_LARGE_IN_FLIGHT of
 * them carry a large message (memory), MAX_LARGE_PER_TARGET to one target (slots.ts). Every
 * attempt has a deadline.
 * Durability: at-least-once. A claim is committed (`delivering`) before the attempt; on
 * start, `delivering` rows left by a crash are attempted again (interrupted.ts; a duplicate is
 * possible, a loss is not). Results are committed without an fsync (WAL, synchronous=NORMAL: the write lock is
 * held only for the write); a spool file is unlinked only after an fsync of the WAL that began
 * after that commit (`durable`), so a crash can lose a "delivered" state (→ a redelivery) but
 * never leave a queued row whose spool file is gone.
 * Failure: database errors in a tick are logged and retried on the next tick; an attempt
 * whose result cannot be recorded (disk full, the write lock held past busy_timeout) keeps its
 * slot and retries the commit with backoff until the database takes it, so the row does not
 * stay `delivering` until a restart; a stop meanwhile leaves it for the next start to redo.
 */
import type { Database } from "bun:sqlite";
import type { Config, RelayConfig } from "../config/config.ts";
import type { Logger } from "../log/logger.ts";
import { createAttemptRunner } from "./attempt-runner.ts";
import { createAttemptsInFlight } from "./attempts-in-flight.ts";
import { createClaimLoop } from "./claim-loop.ts";
import { createCurrentRelay } from "./current-relay.ts";
import { logInterrupted, recoverInterrupted } from "./interrupted.ts";
import { RECORD_RETRY_MS } from "./persistent-write.ts";
import { createQueueHousekeeping } from "./queue-housekeeping.ts";
import { createRelayGate } from "./relay-suspension.ts";
import { createSpoolAccess, type SpoolAccess } from "./spool-access.ts";
import { createTargetHealth } from "./target-health.ts";
import { createWorkerStop } from "./worker-stop.ts";

/**
 * Attempts running at once, all targets together. Bounds sockets, memory (message bytes) and
 * CPU. Forwards (at most the relay's cap: 8 connections × 4) and webhooks (at most
 * MAX_WEBHOOKS_IN_FLIGHT) each have their own share of it, so a stalled relay with a backlog
 * cannot hold every webhook back, nor stalled webhook receivers the forwards.
 */
export const MAX_IN_FLIGHT = 48;
export { LARGE_MESSAGE_BYTES, MAX_LARGE_IN_FLIGHT, MAX_LARGE_PER_TARGET, MAX_PER_WEBHOOK_TARGET } from "./slots.ts";
/** Webhook attempts running at once, all URLs together. */
export const MAX_WEBHOOKS_IN_FLIGHT = 16;
export { FORWARDS_PER_RELAY_CONNECTION } from "./current-relay.ts";
/** Fallback poll: picks up `mailgw queue retry` from another process and missed wake-ups. */
export const POLL_INTERVAL_MS = 500;
/**
 * Deadline of one attempt: a relay or webhook that stalls is cut off and retried later. A forward
 * whose data is all sent then waits for the relay's reply instead (RELAY_FINAL_REPLY_TIMEOUT_MS).
 */
export const ATTEMPT_TIMEOUT_MS = 120_000;
/** Plus time per byte of the message (attempt-runner.ts attemptDeadlineMs). */
export { TRANSFER_ALLOWANCE_BYTES_PER_SECOND } from "./attempt-runner.ts";
/** On stop, how long running attempts may finish before they are aborted. */
export const STOP_GRACE_MS = 10_000;
export { STOPPED_DURING_ATTEMPT } from "./attempt-runner.ts";
export { RECORD_RETRY_MS } from "./persistent-write.ts";

export interface DeliveryWorkerOptions {
  config: Config;
  db: Database;
  logger: Logger;
  dataDir?: string;
  spool?: SpoolAccess;
  pollIntervalMs?: number;
  attemptTimeoutMs?: number;
  maxInFlight?: number;
  now?: () => number;
  random?: () => number;
  /** Resolves once every commit made so far is on disk; default: an fsync of the WAL file. */
  durable?: () => Promise<void>;
  /** Default RECORD_RETRY_MS. */
  recordRetryMs?: number;
}

export interface DeliveryWorker {
  /** Recovers interrupted attempts, releases held forwards if a relay is set, starts polling. */
  start(): void | Promise<void>;
  /** Stops claiming; waits for running attempts (bounded), then closes the relay pool. */
  stop(): Promise<void>;
  /** Something was enqueued: look for due work now. */
  wake(): void;
  /** New relay settings (SIGHUP): replaces the pool; with a relay, held forwards become due. */
  reloadRelay(relay: RelayConfig | null): void;
  /** Attempts running now (for health and tests). */
  inFlight(): number;
}

export function createDeliveryWorker(opts: DeliveryWorkerOptions): DeliveryWorker {
  const { config, db, logger } = opts;
  const now = opts.now ?? Date.now;
  const random = opts.random ?? Math.random;
  const spool = opts.spool ?? createSpoolAccess(db, opts.dataDir ?? config.dataDir);
  const pollMs = opts.pollIntervalMs ?? POLL_INTERVAL_MS;
  const attemptTimeoutMs = opts.attemptTimeoutMs ?? ATTEMPT_TIMEOUT_MS;
  const maxInFlight = opts.maxInFlight ?? MAX_IN_FLIGHT;
  const webhookCap = Math.min(maxInFlight, MAX_WEBHOOKS_IN_FLIGHT);
  /** Requested when stop() is called; running attempts cut STOP_GRACE_MS later. */
  const workerStop = createWorkerStop(STOP_GRACE_MS);
  /** The webhook URLs that answer, fail for now or asked for quiet; the relay's last failure. */
  const health = createTargetHealth(db, pollMs, now);
  /** The relay suspended after it failed itself: forwards wait for one probe (relay-suspension.ts). */
  const gate = createRelayGate({ db, logger, queue: config.queue });
  /** The relay pool forwards go to (none: they are held), swapped by start, reload and stop. */
  const relay = createCurrentRelay({ config, db, logger, now });
  /** Held forwards, clock steps and expiry, checked before a claim. */
  const housekeeping = createQueueHousekeeping({ db, logger, queue: config.queue, relay, health, pollMs });
  const attempt = createAttemptRunner({
    config, db, logger, spool, relay, gate, health, housekeeping, now, random, attemptTimeoutMs,
    recordRetryMs: opts.recordRetryMs ?? RECORD_RETRY_MS, stopRequested: workerStop.requested, stopped: workerStop.cut, durable: opts.durable,
  });
  const inFlight = createAttemptsInFlight({ logger, attempt, relay, health, webhookCap, now });
  /** Claims on wake-ups and the poll; the worker's running state. */
  const loop = createClaimLoop({ db, logger, now, pollMs, maxInFlight, relay, gate, housekeeping, inFlight });

  return {
    start() {
      if (!loop.begin()) return;
      relay.swap(config.relay);
      logInterrupted(logger, recoverInterrupted(db, { now: now(), ...config.queue, random }));
      gate.start(relay.client()?.label ?? null, now());
      if (relay.client() === null) logger.warn("no relay configured (RELAY_SMTP_HOST): forward deliveries are held until one is set");
      relay.releaseHeld();
      loop.tick();
    },
    async stop() {
      if (!loop.end()) return;
      await workerStop.run(inFlight.allSettled);
      // Before the delivery thread ends: its sockets would otherwise die without QUIT. Taken out
      // first, so a reload during the QUITs cannot swap in a pool that is never closed.
      await relay.swap(null)?.close();
    },
    wake: loop.wake,
    reloadRelay(next) {
      if (loop.stopping()) return; // stop() closes the pool; a new one would never be closed
      const previous = relay.swap(next);
      health.forgetRelay(); // the new relay's health is not known yet
      // The old relay's idle sessions say QUIT in the background; what waited for one of them
      // goes to the new relay (nothing deferred by a reload), busy ones finish their message.
      void previous?.close(relay.client() ?? undefined);
      gate.lift(now());
      relay.releaseHeld();
      loop.wake();
    },
    inFlight: inFlight.size,
  };
}
