/**
 * Queue SQL of the claim: the due deliveries the worker's free slots can take (queued or
 * deferred, oldest due first, read per kind and per webhook URL so that rows no slot can take are
 * never read), then those the caps keep marked `delivering` in one guarded UPDATE. Apart from
 * recording results (queue-store.ts) because a claim reads without the write lock and writes only
 * what it took; the worker's claim loop (claim-loop.ts) is its one caller.
 *
 * Trusts: the schema of store/migrations.ts. Failure: SQLite errors are thrown to the caller.
 */
import type { Database } from "bun:sqlite";
import { commitWithShortWaits, withoutFsync } from "../spool/wal-sync.ts";
import type { DeliveryKind } from "../types.ts";

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
