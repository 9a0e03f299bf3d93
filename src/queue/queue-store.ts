/**
 * Queue SQL: every read and write of `deliveries` / `delivery_attempts` made by the worker
 * and by `mailgw queue`. State machine (SPEC §5):
 *   queued|deferred → delivering → delivered | deferred | failed;  held → queued (relay set);
 *   failed|deferred|held → queued (`queue retry`);  delivering → queued|deferred|failed (start
 *   after a crash: interrupted.ts).
 * A forward the relay took for only some recipients is delivered; the recipients it refused
 * get a delivery of their own, created in the same transaction: failed (5xx) or deferred (4xx).
 * Each transition is one UPDATE guarded by the state it leaves, so the worker and the CLI
 * (another process, same WAL database) never overwrite each other's change.
 * The SQL of `mailgw queue list|retry|drop` is in queue-store-admin.ts, re-exported here.
 * Trusts: the schema of store/migrations.ts. Failure: SQLite errors are thrown to the caller.
 */
import type { Database } from "bun:sqlite";
import { commitWithShortWaits, withoutFsync } from "../spool/wal-sync.ts";
import { bumpCounterBatch, type CounterIncrement } from "../store/counters.ts";
import { durationIncrements } from "../store/delivery-durations.ts";
import { NOT_YET_DURABLE_AT, spoolStillNeeded } from "../store/messages.ts";
import type { DeliveryKind } from "../types.ts";
import type { NextStep, RefusedRecipients } from "./retry.ts";
import { keepTakenRecipients, recordDeferred, recordRefused } from "./split-deliveries.ts";

// For `mailgw queue` (queue-admin.ts).
export {
  countQueue, dropDeliveries, dropFailedDeliveries, findDeliveries, listQueue, PENDING_STATES, type QueueEntry, RETRYABLE_STATES, retryNow,
} from "./queue-store-admin.ts";

/** A claimed delivery with what an attempt needs from its message row. */
export interface ClaimedDelivery {
  id: number;
  messageId: string;
  kind: DeliveryKind;
  /** forward: JSON array of addresses; webhook: URL. */
  target: string;
  rule: string | null;
  category: string;
  attempts: number;
  createdAt: number;
  /** What QUEUE_MAX_AGE_HOURS counts from: the queueing, or the last `queue retry`. */
  ageFrom: number;
  /** Attempts made before the last `queue retry` (the backoff restarts there). */
  retryAttempts: number;
  nextAttemptAt: number;
  mailFrom: string;
  recipients: string;
  clientIp: string;
  helo: string;
  tls: number;
  receivedAt: number;
  subject: string;
  /** Bytes of the stored message. */
  size: number;
  /** CRC-32 of those bytes, recorded at intake (null: a row from before migration 3). */
  spoolCrc: number | null;
}

/**
 * How many due deliveries a claim may look at, per kind: exactly the free slots, so a busy
 * relay's refill reads a handful of rows rather than a page of them, and targets at their cap.
 */
export interface ClaimLimits {
  /** Forwards the relay can take now (0 when it is at its cap). */
  forwards: number;
  /** Webhook deliveries the free slots can take now. */
  webhooks: number;
  /** Webhook URLs at their cap. */
  webhookTargets: string[];
  /** Which large messages can start now; absent: messages of any size. */
  large?: LargeLimits;
}

/**
 * A due row that cannot start now is not read at all: a claim reads only as many rows as there
 * are free slots, so large ones no large-message slot can take would fill the read and hide the
 * rows behind them (another URL's posts behind a stalled receiver's backlog of large posts).
 */
export interface LargeLimits {
  /** Messages from this size on are large. */
  bytes: number;
  /** Whether a large forward can start now. */
  forwards: boolean;
  /** Whether a large webhook post can start now, to a URL not in `webhookTargets`. */
  webhooks: boolean;
  /** Webhook URLs holding their share of the large-message slots. */
  webhookTargets: string[];
}

const CLAIM_COLUMNS = `d.id, d.message_id AS messageId, d.kind, d.target, d.rule, d.category, d.attempts,
  d.created_at AS createdAt, coalesce(d.retry_from, d.created_at) AS ageFrom, d.retry_attempts AS retryAttempts,
  d.next_attempt_at AS nextAttemptAt, m.mail_from AS mailFrom, m.recipients,
  m.client_ip AS clientIp, m.helo, m.tls, m.received_at AS receivedAt, m.subject, m.size, m.spool_crc AS spoolCrc`;

/**
 * Due deliveries (oldest due first), not yet claimed. One ordered range seek per
 * (kind, state) on deliveries_kind_due (migration 2), merged here: no sort of the backlog,
 * and a relay at its cap does not make the claim walk past every queued forward.
 */
export function dueCandidates(db: Database, now: number, limits: ClaimLimits): ClaimedDelivery[] {
  const found: ClaimedDelivery[] = [];
  const large = limits.large ?? { bytes: Number.MAX_SAFE_INTEGER, forwards: true, webhooks: true, webhookTargets: [] };
  for (const state of ["queued", "deferred"]) {
    if (limits.forwards > 0) {
      found.push(...db.query<ClaimedDelivery, [string, number, number, number, number]>(DUE_FORWARDS).all(state, now, limits.forwards, large.bytes, large.forwards ? 1 : 0));
    }
    if (limits.webhooks > 0) found.push(...dueWebhooks(db, state, now, limits, large));
  }
  return found.length < 2 ? found : found.sort(byDue);
}

const byDue = (a: ClaimedDelivery, b: ClaimedDelivery): number => a.nextAttemptAt - b.nextAttemptAt;

/**
 * The first `limits.webhooks` due webhook posts in `state` of URLs not at their cap. Read per
 * URL: the rows of a URL at its cap are never visited, however many are due behind it.
 */
function dueWebhooks(db: Database, state: string, now: number, limits: ClaimLimits, large: LargeLimits): ClaimedDelivery[] {
  const atCap = new Set(limits.webhookTargets);
  const largeAtCap = new Set(large.webhookTargets);
  const due: ClaimedDelivery[] = [];
  for (const { url } of db.query<{ url: string }, [string]>(WEBHOOK_URLS).all(state)) {
    if (atCap.has(url)) continue;
    const largeOk = large.webhooks && !largeAtCap.has(url) ? 1 : 0;
    due.push(...db.query<ClaimedDelivery, [string, string, number, number, number, number]>(DUE_WEBHOOKS_OF).all(state, url, now, limits.webhooks, large.bytes, largeOk));
  }
  return due.length <= limits.webhooks ? due : due.sort(byDue).slice(0, limits.webhooks);
}

const DUE_FORWARDS = `SELECT ${CLAIM_COLUMNS} FROM deliveries d JOIN messages m ON m.id = d.message_id
  WHERE d.kind = 'forward' AND d.state = ?1 AND d.next_attempt_at <= ?2 AND (m.size < ?4 OR ?5)
  ORDER BY d.next_attempt_at LIMIT ?3`;
/** The webhook URLs with rows in state ?1: a loose scan of deliveries_webhook_due, one seek per URL. */
const WEBHOOK_URLS = `WITH RECURSIVE urls(url) AS (
    SELECT (SELECT min(target) FROM deliveries WHERE kind = 'webhook' AND state = ?1)
    UNION ALL
    SELECT (SELECT min(target) FROM deliveries WHERE kind = 'webhook' AND state = ?1 AND target > urls.url) FROM urls WHERE urls.url IS NOT NULL)
  SELECT url FROM urls WHERE url IS NOT NULL`;
const DUE_WEBHOOKS_OF = `SELECT ${CLAIM_COLUMNS} FROM deliveries d JOIN messages m ON m.id = d.message_id
  WHERE d.kind = 'webhook' AND d.state = ?1 AND d.target = ?2 AND d.next_attempt_at <= ?3 AND (m.size < ?5 OR ?6)
  ORDER BY d.next_attempt_at LIMIT ?4`;

/**
 * Marks the given candidates `delivering` in one UPDATE; returns those it actually took (the
 * CLI, or another claimer, may have changed one since it was read). Runs in claimDue's transaction.
 */
function claim(db: Database, candidates: readonly ClaimedDelivery[], now: number): ClaimedDelivery[] {
  if (candidates.length === 0) return [];
  const taken = db
    .query<{ id: number }, [number, string]>(
      // `+state`: without it SQLite walks deliveries_due over every queued row (O(backlog) per
      // claim, 39% of the delivery thread's CPU with 8,000 queued); with it, one key lookup per id.
      `UPDATE deliveries SET state = 'delivering', updated_at = ?
       WHERE id IN (SELECT value FROM json_each(?)) AND +state IN ('queued', 'deferred') RETURNING id`,
    )
    .all(now, JSON.stringify(candidates.map((c) => c.id)));
  if (taken.length === candidates.length) return [...candidates];
  const ids = new Set(taken.map((r) => r.id));
  return candidates.filter((c) => ids.has(c.id));
}

/**
 * Due candidates, read WITHOUT the write lock (a WAL read never blocks a writer), then — only
 * when `choose` (the worker's per-target caps) keeps some — ONE short write transaction with the
 * guarded `UPDATE … RETURNING` (a row the CLI changed meanwhile is simply not taken). A worker
 * at its relay cap, woken by intake, therefore never takes the lock another connection (intake
 * on the main thread) may be waiting for.
 * The commit is not fsynced: a claim lost in a crash leaves the row queued and it is simply
 * attempted again (at-least-once).
 */
export function claimDue(
  db: Database,
  now: number,
  limits: ClaimLimits,
  choose: (candidates: ClaimedDelivery[]) => ClaimedDelivery[],
): ClaimedDelivery[] {
  if (limits.forwards <= 0 && limits.webhooks <= 0) return [];
  const candidates = dueCandidates(db, now, limits);
  if (candidates.length === 0) return [];
  const chosen = choose(candidates);
  if (chosen.length === 0) return [];
  return withoutFsync(db, () => commitWithShortWaits(db, () => claim(db, chosen, now)));
}


export interface AttemptRecord {
  delivery: ClaimedDelivery;
  at: number;
  durationMs: number;
  /** What was tried, for the attempts table and logs (relay host + recipients, or URL). */
  target: string;
  ok: boolean;
  /** Reply on success, error otherwise. */
  reply: string;
  step: NextStep;
  /** Recipients the relay refused while delivering to the others: recorded as a failed delivery. */
  refused?: RefusedRecipients;
  /** Recipients the relay deferred (4xx) while delivering to the others: a delivery of their own. */
  deferred?: DeferredRecipients;
}

/** Temporarily refused recipients with what their own delivery becomes (see recordDeferred). */
export interface DeferredRecipients extends RefusedRecipients {
  /** The retry schedule's step for them: deferred with the next try, or failed once too old. */
  step: NextStep;
}

/** What recording one attempt found. */
export interface FinishResult {
  /** false: nothing recorded, the delivery is no longer `delivering` (`mailgw queue drop` meanwhile). */
  recorded: boolean;
  /** The message's spool file is needed by nothing any more (see spoolStillNeeded) and may go. */
  spoolReleasable: boolean;
  /** Number of the delivery created for the record's `deferred` recipients; null when none. */
  deferredDelivery: number | null;
  /** Number of the failed delivery created for the record's `refused` recipients; null when none. */
  refusedDelivery: number | null;
}

/**
 * Records attempts and the states they lead to, with their counters (the duration histogram's
 * included: it must outlive the attempt rows, see delivery-durations.ts), in ONE transaction
 * (group commit: every attempt that finished meanwhile). Counters are summed per
 * (day, metric, rule, category) first, so a group bumps each counter row once. Whether a
 * final delivery's spool file may go is decided inside the same transaction.
 * Committed without an fsync (see withoutFsync): the caller must wait for a WAL fsync before
 * it unlinks a releasable spool file (a lost "delivered" only means a redelivery).
 */
export function finishAttempts(db: Database, records: readonly AttemptRecord[]): FinishResult[] {
  return withoutFsync(db, () => commitWithShortWaits(db, () => {
    const increments: CounterIncrement[] = [];
    const results = records.map((r): FinishResult => {
      if (!recordAttempt(db, r)) return { recorded: false, spoolReleasable: false, deferredDelivery: null, refusedDelivery: null };
      increments.push({ at: r.at, metric: `${r.step.state}:${r.delivery.kind}`, rule: r.delivery.rule, category: r.delivery.category });
      increments.push(...durationIncrements(r.at, r.delivery.kind, r.durationMs));
      const refusedDelivery = r.refused ? recordRefused(db, r, r.refused) : null;
      if (r.refused) {
        increments.push({ at: r.at, metric: `failed:${r.delivery.kind}`, rule: r.delivery.rule, category: r.delivery.category });
      }
      const deferredDelivery = r.deferred ? recordDeferred(db, r, r.deferred) : null;
      if (r.deferred) {
        increments.push({ at: r.at, metric: `${r.deferred.step.state}:${r.delivery.kind}`, rule: r.delivery.rule, category: r.delivery.category });
      }
      if (r.refused || r.deferred) keepTakenRecipients(db, r, [...(r.refused?.recipients ?? []), ...(r.deferred?.recipients ?? [])]);
      // After the split rows: a deferred (or failed) split keeps the spool file of a delivered forward.
      const final = r.step.state !== "deferred";
      return { recorded: true, spoolReleasable: final && !spoolStillNeeded(db, r.delivery.messageId), deferredDelivery, refusedDelivery };
    });
    bumpCounterBatch(db, increments);
    return results;
  }));
}

function recordAttempt(db: Database, r: AttemptRecord): boolean {
  const { delivery: d, step } = r;
  const end = r.at + r.durationMs;
  const changed = db
    .query(
      `UPDATE deliveries SET state = ?, attempts = attempts + 1, next_attempt_at = ?, updated_at = ?,
         last_error = ?, delivered_at = ? WHERE id = ? AND state = 'delivering'`,
    )
    .run(step.state, step.nextAttemptAt, end, r.ok ? null : (step.reason ?? r.reply), step.state === "delivered" ? end : null, d.id)
    .changes;
  if (changed !== 1) return false;
  db.query(`INSERT INTO delivery_attempts (delivery_id, at, target, duration_ms, ok, reply) VALUES (?, ?, ?, ?, ?, ?)`)
    .run(d.id, r.at, r.target, r.durationMs, r.ok ? 1 : 0, r.reply);
  return true;
}

/** A claimed forward found with no relay configured goes (back) to `held`. */
export function holdClaimed(db: Database, id: number, now: number): void {
  db.query(`UPDATE deliveries SET state = 'held', updated_at = ? WHERE id = ? AND state = 'delivering'`).run(now, id);
}

/** Without a relay: queued/deferred forwards become `held` (e.g. after `queue retry`). */
export function holdForwards(db: Database, now: number): number {
  return db
    .query(`UPDATE deliveries SET state = 'held', updated_at = ? WHERE kind = 'forward' AND state IN ('queued', 'deferred')`)
    .run(now).changes;
}

/**
 * With a relay: held forwards become due now, except one whose message is not yet durable: it
 * is queued but stays held back until the intake releases it (else the worker could look for
 * a spool file not written yet, and fail a message its client got 250 for). QUEUE_MAX_AGE_HOURS
 * counts from the release, as from a `queue retry`: it bounds the retries of a relay that fails,
 * not the wait for a relay to be configured (a forward held for days must not fail at its first
 * 4xx).
 */
export function releaseHeld(db: Database, now: number): number {
  return db
    .query(
      `UPDATE deliveries SET state = 'queued', updated_at = ?1, retry_from = ?1, retry_attempts = attempts,
         next_attempt_at = CASE WHEN next_attempt_at = ${NOT_YET_DURABLE_AT} THEN next_attempt_at ELSE ?1 END
       WHERE state = 'held'`,
    )
    .run(now).changes;
}

/** Whether any delivery is held (a read: no write lock unless there is something to release). */
export function anyHeld(db: Database): boolean {
  return db.query(`SELECT 1 FROM deliveries WHERE state = 'held' LIMIT 1`).get() !== null;
}

/**
 * Deliveries due more than `aheadMs` after `now`, which no schedule does (a retry waits at most
 * RETRY_CAP_MS): their time came from a clock that has gone back since (set ahead, then corrected
 * by NTP). Due now, else they would wait for the clock to catch up, days or years. Read first:
 * no write lock unless one is found. Held-back intake rows (NOT_YET_DURABLE_AT) are not touched.
 */
export function rescheduleFromFuture(db: Database, now: number, aheadMs: number): number {
  const where = `state IN ('queued', 'deferred') AND next_attempt_at > ?1 AND next_attempt_at < ${NOT_YET_DURABLE_AT}`;
  if (db.query(`SELECT 1 FROM deliveries WHERE ${where} LIMIT 1`).get(now + aheadMs) === null) return 0;
  return db.query(`UPDATE deliveries SET next_attempt_at = ?2, updated_at = ?2 WHERE ${where}`).run(now + aheadMs, now).changes;
}
