/**
 * Message-row SQL: the one writer path for `messages` (and the deliveries created with a
 * message). Callers wrap these in their own transaction (the pipeline commits a whole batch
 * of messages, their deliveries and counters in one). Prepared statements are cached per
 * Database by bun:sqlite's `query`.
 * Trusts: values come from the pipeline (generated id, parsed and classified facts).
 * Failure: SQLite errors are thrown to the caller, which rolls back its transaction.
 */
import type { Database } from "bun:sqlite";
import type { Action, DeliveryKind, DeliveryState, MessageStatus } from "../types.ts";
import { bumpCounterBatch } from "./counters.ts";

export interface MessageRow {
  id: string;
  receivedAt: number;
  clientIp: string;
  helo: string;
  tls: boolean;
  mailFrom: string;
  recipients: string[];
  subject: string;
  size: number;
  rule: string | null;
  category: string;
  action: Action;
  archive: boolean;
  status: MessageStatus;
  /** CRC-32 of the spool file's bytes (null: no spool file). */
  spoolCrc?: number | null;
  /** The intake commit group that wrote the row (see act/intake.ts), null outside one. */
  commitSeq?: number | null;
  /** Set at intake for a message written straight to the archive (relative to DATA_DIR). */
  archivePath?: string | null;
  /** Not stored: the message's commit also counts its SMTP session (Envelope.firstInSession). */
  countsSession?: boolean;
}

export interface NewDelivery {
  messageId: string;
  kind: DeliveryKind;
  /** forward: the addresses; webhook: the URL. */
  target: string[] | string;
  rule: string | null;
  category: string;
  state: DeliveryState;
  createdAt: number;
}

/** A message whose post-250 work is not finished. */
export interface PendingMessage {
  id: string;
  receivedAt: number;
  archive: boolean;
  archivePath: string | null;
}

/** Delivery states in which the spool file is still needed. */
export const SPOOL_NEEDED_STATES: readonly DeliveryState[] = ["queued", "deferred", "held", "delivering", "failed"];

/** Longest subject stored (the rest is cut): keeps one hostile header from bloating rows. */
export const MAX_STORED_SUBJECT_CHARS = 998;

export function insertMessage(db: Database, m: MessageRow): void {
  db.query(
    `INSERT INTO messages (id, received_at, client_ip, helo, tls, mail_from, recipients, subject, size,
                           rule, category, action, archive, status, spool_crc, commit_seq, archive_path)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  ).run(
    m.id,
    m.receivedAt,
    m.clientIp,
    m.helo,
    m.tls ? 1 : 0,
    m.mailFrom,
    JSON.stringify(m.recipients),
    m.subject.slice(0, MAX_STORED_SUBJECT_CHARS),
    m.size,
    m.rule,
    m.category,
    m.action,
    m.archive ? 1 : 0,
    m.status,
    m.spoolCrc ?? null,
    m.commitSeq ?? null,
    m.archivePath ?? null,
  );
}

/**
 * next_attempt_at of a delivery whose message is committed but not yet known to be durable
 * (act/intake.ts commits rows before the group's syncfs, and writes the files then): no
 * worker claims it before `releaseDeliveries` (or recovery) sets its real time. Year 275760.
 */
export const NOT_YET_DURABLE_AT = 8.64e15;

/** Makes the deliveries of these messages claimable (their messages are durable now). */
export function releaseDeliveries(db: Database, messageIds: readonly string[]): void {
  const stmt = db.query(`UPDATE deliveries SET next_attempt_at = created_at WHERE message_id = ? AND next_attempt_at = ?`);
  for (const id of messageIds) stmt.run(id, NOT_YET_DURABLE_AT);
}

/** Recovery and the sweep: releases every held-back delivery created before `beforeMs`. */
export function releaseDeliveriesCreatedBefore(db: Database, beforeMs: number): number {
  // Held back rows are `queued` or `held` (as inserted): a seek on deliveries_due, not a scan.
  return db
    .query(`UPDATE deliveries SET next_attempt_at = created_at WHERE state IN ('queued', 'held') AND next_attempt_at = ? AND created_at < ?`)
    .run(NOT_YET_DURABLE_AT, beforeMs).changes;
}

/** `notBefore`: NOT_YET_DURABLE_AT to hold it back until released; default: due at once. */
export function insertDelivery(db: Database, d: NewDelivery, notBefore: number = d.createdAt): void {
  db.query(
    `INSERT INTO deliveries (message_id, kind, target, rule, category, state, attempts, created_at, next_attempt_at, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?)`,
  ).run(
    d.messageId,
    d.kind,
    typeof d.target === "string" ? d.target : JSON.stringify(d.target),
    d.rule,
    d.category,
    d.state,
    d.createdAt,
    notBefore,
    d.createdAt,
  );
}

/**
 * Deletes messages with their deliveries and delivery attempts (run in a transaction): a group
 * whose storage failed after its commit, a row recovery finds unacknowledged, archive retention.
 */
export function deleteMessages(db: Database, ids: readonly string[]): void {
  const list = JSON.stringify(ids);
  db.query(
    `DELETE FROM delivery_attempts WHERE delivery_id IN
       (SELECT id FROM deliveries WHERE message_id IN (SELECT value FROM json_each(?)))`,
  ).run(list);
  db.query(`DELETE FROM deliveries WHERE message_id IN (SELECT value FROM json_each(?))`).run(list);
  db.query(`DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?))`).run(list);
}

/** Marks a message finished; `archivePath` (relative to DATA_DIR) when a copy was archived. */
export function markMessageDone(db: Database, id: string, archivePath: string | null): void {
  db.query(`UPDATE messages SET status = 'done', archive_path = coalesce(?, archive_path) WHERE id = ?`).run(archivePath, id);
}

/** Messages not yet done, in id order, after `afterId` (a cursor for paging). */
export function pendingMessages(db: Database, afterId: string, limit: number): PendingMessage[] {
  return db
    .query<{ id: string; received_at: number; archive: number; archive_path: string | null }, [string, number]>(
      `SELECT id, received_at, archive, archive_path FROM messages WHERE status <> 'done' AND id > ? ORDER BY id LIMIT ?`,
    )
    .all(afterId, limit)
    .map((r) => ({ id: r.id, receivedAt: r.received_at, archive: r.archive === 1, archivePath: r.archive_path }));
}

export function messageStatus(db: Database, id: string): { status: MessageStatus; receivedAt: number; archive: boolean } | null {
  const row = db
    .query<{ status: MessageStatus; received_at: number; archive: number }, [string]>(
      `SELECT status, received_at, archive FROM messages WHERE id = ?`,
    )
    .get(id);
  return row ? { status: row.status, receivedAt: row.received_at, archive: row.archive === 1 } : null;
}

/**
 * True while the spool file must stay: the message has no row (recovery decides), is not done,
 * or a delivery still needs it (failed ones too: `mailgw queue retry` reads it).
 */
export function spoolStillNeeded(db: Database, id: string): boolean {
  const row = db
    .query<{ needed: number }, [string]>(
      `SELECT coalesce((SELECT status FROM messages WHERE id = ?1), 'no row') <> 'done'
           OR EXISTS (SELECT 1 FROM deliveries WHERE message_id = ?1
                        AND state IN (${SPOOL_NEEDED_STATES.map((s) => `'${s}'`).join(", ")})) AS needed`,
    )
    .get(id);
  return row?.needed === 1;
}

/** Ids of messages (after `afterId`, in id order) with a delivery that still needs the spool file. */
export function messagesNeedingSpool(db: Database, afterId: string, limit: number): string[] {
  return db
    .query<{ message_id: string }, [string, number]>(
      `SELECT DISTINCT message_id FROM deliveries
        WHERE state IN (${SPOOL_NEEDED_STATES.map((s) => `'${s}'`).join(", ")}) AND message_id > ?
        ORDER BY message_id LIMIT ?`,
    )
    .all(afterId, limit)
    .map((r) => r.message_id);
}

/**
 * Every delivery of the message that still needs its spool file becomes `failed` with `error`,
 * except those already failed for a missing file (a start before this one, or an attempt, said
 * so). Returns how many changed: 0 means there is nothing new to report. Call inside a transaction.
 * Those that were not failed yet are counted `failed:<kind>`, as an attempt, the age limit or a
 * suspended relay failing them are: otherwise mailgw_deliveries_total{result="failed"} and the
 * per-rule "Failed" column missed deliveries the queue (and mailgw_queue_depth) shows failed.
 */
export function failDeliveriesWithoutFile(db: Database, messageId: string, error: string, now: number): number {
  const where = `message_id = ? AND state IN (${SPOOL_NEEDED_STATES.map((s) => `'${s}'`).join(", ")})
          AND NOT (state = 'failed' AND last_error LIKE '${MISSING_FILE_PREFIX}%')`;
  const newlyFailed = db
    .query<{ kind: DeliveryKind; rule: string | null; category: string }, [string]>(
      `SELECT kind, rule, category FROM deliveries WHERE ${where} AND state <> 'failed'`,
    )
    .all(messageId);
  bumpCounterBatch(db, newlyFailed.map((d) => ({ at: now, metric: `failed:${d.kind}` as const, rule: d.rule, category: d.category })));
  return db.query(`UPDATE deliveries SET state = 'failed', last_error = ?, updated_at = ? WHERE ${where}`).run(error, now, messageId).changes;
}

/** How every "the spool file is gone" error starts (recovery's and an attempt's). */
export const MISSING_FILE_PREFIX = "spool file missing";

/** Ids (of those given) that have a message row. */
export function existingMessageIds(db: Database, ids: readonly string[]): Set<string> {
  const found = new Set<string>();
  const stmt = db.query<{ id: string }, [string]>(`SELECT id FROM messages WHERE id = ?`);
  for (const id of ids) if (stmt.get(id)) found.add(id);
  return found;
}

export interface ArchivedRow {
  id: string;
  archivePath: string;
  receivedAt: number;
}

/*
 * Both retention queries take `fromMs`, where the previous page ended (its last received_at),
 * so that each page seeks there by the received_at index. From the oldest row each time, page
 * N walked again over every row the pages before it had passed (cleared, never archived, or
 * kept for a delivery): on a year's database the late pages took 170 ms each, on the event loop.
 */

/** Archived messages received in [fromMs, beforeMs), oldest first (for retention). */
export function archivedBefore(db: Database, beforeMs: number, limit: number, fromMs = 0): ArchivedRow[] {
  return db
    .query<{ id: string; archive_path: string; received_at: number }, [number, number, number]>(
      `SELECT id, archive_path, received_at FROM messages WHERE received_at >= ? AND received_at < ? AND archive_path IS NOT NULL
        ORDER BY received_at LIMIT ?`,
    )
    .all(fromMs, beforeMs, limit)
    .map((r) => ({ id: r.id, archivePath: r.archive_path, receivedAt: r.received_at }));
}

/**
 * Finished messages received in [fromMs, beforeMs) that no delivery needs any more (all
 * delivered, or none): what archive retention deletes. Oldest first, by the received_at index.
 */
export function expiredMessages(db: Database, beforeMs: number, limit: number, fromMs = 0): { id: string; receivedAt: number }[] {
  return db
    .query<{ id: string; received_at: number }, [number, number, number]>(
      `SELECT id, received_at FROM messages m WHERE received_at >= ? AND received_at < ? AND status = 'done'
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.state <> 'delivered')
       ORDER BY received_at LIMIT ?`,
    )
    .all(fromMs, beforeMs, limit)
    .map((r) => ({ id: r.id, receivedAt: r.received_at }));
}

export function clearArchivePath(db: Database, id: string): void {
  db.query(`UPDATE messages SET archive_path = NULL WHERE id = ?`).run(id);
}
