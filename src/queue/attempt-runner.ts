/**
 * One claimed delivery inside the delivery worker (worker.ts), from its claim to its spool file's
 * removal: a forward with no relay goes back to held; otherwise the attempt runs (attempt.ts)
 * under its deadline, its outcome updates the targets' health and the relay gate, the next state
 * is committed (one group commit per event-loop turn) and logged, and the spool file is removed
 * once that commit is durable. Apart from the claim loop: this is all that happens per message.
 *
 * Trusts: the claimed row. Failure: a result that cannot be committed is retried until it is
 * (persistent-write.ts); other errors reach the caller, which logs them.
 */
import type { Database } from "bun:sqlite";
import type { Config } from "../config/config.ts";
import type { Logger } from "../log/logger.ts";
import { createRemovalRetry } from "../spool/removal-retry.ts";
import { WalSync } from "../spool/wal-sync.ts";
import { runAttempt } from "./attempt.ts";
import { attemptRecord, logAttempt } from "./attempt-record.ts";
import type { CurrentRelay } from "./current-relay.ts";
import { createGroupCommit } from "./group-commit.ts";
import { createPersistentWrite } from "./persistent-write.ts";
import type { QueueHousekeeping } from "./queue-housekeeping.ts";
import * as store from "./queue-store.ts";
import type { RelayGate } from "./relay-suspension.ts";
import type { SpoolAccess } from "./spool-access.ts";
import type { TargetHealth } from "./target-health.ts";

/**
 * An attempt's time beyond ATTEMPT_TIMEOUT_MS (worker.ts) per byte of its message: the deadline
 * runs while the data is sent, and a 25 MB forward needs ~1.7 Mbit/s to fit in 120 s (a webhook
 * post of it, base64 and all, more), so on a slower uplink it timed out at every try until
 * QUEUE_MAX_AGE_HOURS. 32 KB/s gives a 25 MB message 800 s more. A relay that stalls is still cut
 * by its socket's idle timeout; a webhook receiver that stalls (takes no bytes, or no answer comes
 * once they are sent), after ATTEMPT_TIMEOUT_MS without progress (webhook.ts idleTimeoutMs).
 */
export const TRANSFER_ALLOWANCE_BYTES_PER_SECOND = 32 * 1024;

/** Starts the last error of an attempt serve's stop cut off (due again at the next start). */
export const STOPPED_DURING_ATTEMPT = "cut off by serve's stop, due again at start";

export interface AttemptRunnerOptions {
  config: Config;
  db: Database;
  logger: Logger;
  spool: SpoolAccess;
  relay: CurrentRelay;
  gate: RelayGate;
  health: TargetHealth;
  housekeeping: QueueHousekeeping;
  now: () => number;
  random: () => number;
  attemptTimeoutMs: number;
  /** First wait before a failed result commit is tried again. */
  recordRetryMs: number;
  /** Aborted as soon as the worker's stop() is called: a failing commit is given up. */
  stopRequested: AbortSignal;
  /** Aborted once the stop's grace period has passed: cuts the running attempts off. */
  stopped: AbortSignal;
  /** Resolves once every commit made so far is on disk; default: an fsync of the WAL file. */
  durable?: () => Promise<void>;
}

export type AttemptRunner = (d: store.ClaimedDelivery) => Promise<void>;

/** An attempt's deadline: `baseMs`, plus the time to send `bytes` at TRANSFER_ALLOWANCE_BYTES_PER_SECOND. */
export function attemptDeadlineMs(baseMs: number, bytes: number): number {
  return baseMs + Math.ceil((Math.max(0, bytes) / TRANSFER_ALLOWANCE_BYTES_PER_SECOND) * 1000);
}

export function createAttemptRunner(opts: AttemptRunnerOptions): AttemptRunner {
  const { config, db, logger, spool, relay, gate, health, housekeeping, now, random, attemptTimeoutMs, stopped } = opts;
  const persistently = createPersistentWrite({ logger, firstWaitMs: opts.recordRetryMs, stopRequested: opts.stopRequested });
  const recordFinished = createGroupCommit((records: store.AttemptRecord[]) => store.finishAttempts(db, records));
  const walSync = opts.durable ? null : new WalSync(db);
  const durable = opts.durable ?? (() => (walSync as WalSync).sync());
  // Checked against the database (release) as `mailgw queue` does; none once the worker stops.
  const removalRetry = createRemovalRetry(logger, "a delivered message's", (id) => spool.release(id));
  stopped.addEventListener("abort", () => removalRetry.stop(), { once: true });

  return async function attempt(d: store.ClaimedDelivery): Promise<void> {
    if (d.kind === "forward" && relay.client() === null) {
      await persistently("a held forward", d, () => store.holdClaimed(db, d.id, now()));
      return;
    }
    const at = now();
    // Its duration by the monotonic clock: `end - at` was a day when NTP stepped the clock a day.
    const startedMono = performance.now();
    const deadlineMs = attemptDeadlineMs(attemptTimeoutMs, d.size);
    const signal = AbortSignal.any([AbortSignal.timeout(deadlineMs), stopped]);
    const { outcome, target, unsent, relayDown, relay: sentTo } = await runAttempt(d, {
      spool, relay: relay.client(), webhookSecret: config.webhookSecret, signal, stopSignal: stopped, deadlineMs, idleTimeoutMs: attemptTimeoutMs, nowMs: at,
    });
    if (unsent) {
      // The relay was removed while it waited for a connection: held, as if claimed without one.
      await persistently("a held forward", d, () => store.holdClaimed(db, d.id, now()));
      relay.releaseHeld(); // a relay set again since
      return;
    }
    // Cut off by our own stop (STOP_GRACE_MS passed): not the target's failure. It is due again
    // as soon as serve starts, with no backoff and no suspension of the relay, as Postfix's
    // active queue is taken up again after a restart.
    const cutByStop = stopped.aborted && outcome.kind === "temporary";
    // A target starting to fail: the deliveries past the age limit behind it go before the next claim.
    if (!cutByStop && health.note(d, outcome)) housekeeping.expireSoon();
    const end = now();
    const current = relay.client();
    const suspended = !cutByStop && d.kind === "forward" && current !== null
      ? gate.ended(d.id, current.label, sentTo === current.label ? relayDown : undefined, outcome.kind === "delivered" ? "" : outcome.error, end)
      : null;
    const record = attemptRecord(d, outcome, target, at, end, Math.round(performance.now() - startedMono), suspended, config.queue, random);
    if (cutByStop) record.step = { state: "deferred", nextAttemptAt: end, reason: `${STOPPED_DURING_ATTEMPT}: ${outcome.error}` };
    const result = await persistently("a delivery result", d, () => recordFinished(record));
    if (result === null) return;
    logAttempt(logger, record, result);
    if (!result.recorded || !result.spoolReleasable) return;
    await durable();
    await spool.remove(d.messageId).catch((err: unknown) => removalRetry.failed(d.messageId, err));
  };
}
