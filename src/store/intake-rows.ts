/**
 * The SQL of one intake commit group, shared by the two places that run it: the spool writer
 * thread (spool/syncfs-worker.ts, on its own connection, so the event loop never runs these
 * statements nor waits for the write lock the delivery thread holds) and the intake itself
 * when there is no writer thread (act/intake.ts).
 *
 * Order inside one group (see act/intake.ts for why it is safe): rows, deliveries held back,
 * counters and the intake marks in ONE transaction; then the files and a sync; only then
 * `releaseIntakeDeliveries` makes the deliveries claimable, in the transaction that writes
 * the advanced durable mark.
 * Trusts: rows built by the pipeline. Failure: SQLite errors are thrown to the caller, whose
 * transaction rolls back whole.
 */
import type { Database } from "bun:sqlite";
import { bumpCounterBatch, type CounterIncrement } from "./counters.ts";
import { writeIntakeMarks, type IntakeMarks } from "./intake-marks.ts";
import { insertDelivery, insertMessage, NOT_YET_DURABLE_AT, releaseDeliveries, type MessageRow, type NewDelivery } from "./messages.ts";

/** One message of a commit group, as it crosses to the writer thread (structured clone). */
export interface IntakeRowItem {
  row: MessageRow;
  /** CRC-32 of its spool file (null: no file kept). */
  spoolCrc: number | null;
  deliveries: NewDelivery[];
  /** Index of its spool job among the group's jobs; null: no file. */
  job: number | null;
}

/**
 * Inserts a group's rows (numbered `marks.lastSeq + 1`), its deliveries held back, its counters
 * and the new marks; call inside a transaction. Returns the group's number; `marks` is
 * updated only by the caller once the transaction committed.
 */
export function insertIntakeGroup(db: Database, items: readonly IntakeRowItem[], marks: IntakeMarks): number {
  const seq = marks.lastSeq + 1;
  for (const item of items) {
    insertMessage(db, { ...item.row, spoolCrc: item.spoolCrc, commitSeq: seq });
    // Not claimable until the group is durable: the worker must not read a file not yet written.
    for (const d of item.deliveries) insertDelivery(db, d, NOT_YET_DURABLE_AT);
  }
  bumpCounterBatch(db, intakeCounterIncrements(items.map((i) => i.row)));
  writeIntakeMarks(db, { lastSeq: seq, durableSeq: marks.durableSeq });
  return seq;
}

/**
 * Makes the deliveries of the group's durable messages claimable; `jobFailures[i]` non-null
 * means job i was not written (its message is being taken back: nothing to release).
 * Call inside a transaction. Returns how many messages had deliveries to release.
 */
export function releaseIntakeDeliveries(db: Database, items: readonly IntakeRowItem[], jobFailures: readonly (string | null)[] = []): number {
  const ids = items
    .filter((i) => i.deliveries.length > 0 && (i.job === null || jobFailures[i.job] == null))
    .map((i) => i.row.id);
  if (ids.length > 0) releaseDeliveries(db, ids);
  return ids.length;
}

/**
 * commit_seq of a row whose spool file was never written (its job failed: its client got 451).
 * Above every durable mark, so recovery checks it like a row of a group whose sync never
 * finished: it finds no file and removes the row as unacknowledged. The intake deletes such
 * rows itself, but not before the database lets it (a full disk refuses deletes too): a crash
 * meanwhile left them in a durable group, where recovery took them for accepted mail whose file
 * was lost (deliveries failed "spool file missing", an archive row without its file, counted).
 */
export const UNWRITTEN_SEQ = Number.MAX_SAFE_INTEGER;

/** Ids of the group's rows whose job failed (`jobFailures[i]` non-null: job i was not written). */
export function unwrittenRowIds(items: readonly IntakeRowItem[], jobFailures: readonly (string | null)[]): string[] {
  return items.filter((i) => i.job !== null && jobFailures[i.job] != null).map((i) => i.row.id);
}

/**
 * Marks those rows UNWRITTEN_SEQ; call inside the transaction that advances the durable mark past
 * their group, so that the mark never passes them unmarked.
 */
export function markUnwritten(db: Database, ids: readonly string[]): void {
  if (ids.length === 0) return;
  db.query(`UPDATE messages SET commit_seq = ? WHERE id IN (SELECT value FROM json_each(?))`).run(UNWRITTEN_SEQ, JSON.stringify(ids));
}

type CountedRow = Pick<MessageRow, "receivedAt" | "rule" | "category" | "action" | "archive"> & Partial<Pick<MessageRow, "tls" | "countsSession">>;

/**
 * The `received`, `action:<action>` and `archived` increments of a group's rows, and the sessions
 * they count. `archived` counts archive copies whatever the action: `action:archive` alone left
 * out those of forward/webhook rules with `archive: true`, so the files outnumbered the count.
 */
export function intakeCounterIncrements(rows: readonly CountedRow[]): CounterIncrement[] {
  return rows.flatMap((r): CounterIncrement[] => {
    const message: CounterIncrement[] = [
      { at: r.receivedAt, metric: "received", rule: r.rule, category: r.category },
      { at: r.receivedAt, metric: `action:${r.action}`, rule: r.rule, category: r.category },
    ];
    if (r.archive) message.push({ at: r.receivedAt, metric: "archived", rule: r.rule, category: r.category });
    if (!r.countsSession) return message;
    message.push({ at: r.receivedAt, metric: "session", rule: null, category: "" });
    if (r.tls) message.push({ at: r.receivedAt, metric: "session_tls", rule: null, category: "" });
    return message;
  });
}

/**
 * Takes back the intake's counters of stored messages, read from their rows (call inside the
 * transaction that deletes them): recovery removing a message that was never acknowledged
 * leaves the counters as the intake's own 451 path does.
 */
export function uncountIntakeRows(db: Database, ids: readonly string[]): void {
  const rows = db
    .query<Pick<MessageRow, "receivedAt" | "rule" | "category" | "action"> & { archive: number }, [string]>(
      `SELECT received_at AS receivedAt, rule, category, action, archive FROM messages WHERE id IN (SELECT value FROM json_each(?))`,
    )
    .all(JSON.stringify(ids))
    .map((r) => ({ ...r, archive: r.archive !== 0 }));
  bumpCounterBatch(db, intakeCounterIncrements(rows), -1);
}
