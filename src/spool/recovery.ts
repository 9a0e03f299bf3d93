/**
 * Recovery, run at start before SMTP listens: brings the spool and the message rows back
 * into agreement after a crash (kill -9, power loss).
 *
 *  - `<id>.tmp` files: a write that never finished; its client never got 250 → removed.
 *  - `<id>.eml` without a row: fsynced but not committed (crash between the two); the client
 *    never got 250 and will retry → moved to `spool/orphaned/`, logged, never deleted. (Or the
 *    database was restored from a backup older than the spool: the log says both.)
 *  - rows of commit groups after the durable mark (committed, then the crash came before or
 *    during the group's syncfs, act/intake.ts): a spool file whose size or CRC-32 does not
 *    match was never complete on disk, so no 250 was sent → file moved to `spool/orphaned/`,
 *    row removed. Matching ones are kept (at worst a duplicate of a message the client resends).
 *  - files mailgw never writes → moved to `spool/orphaned/` too.
 *  - rows `spooled`: accepted (250 sent) but post-250 work unfinished → finished now
 *    (archive redone idempotently: same path, an existing copy counts as done).
 *  - rows of those groups whose spool file is missing (and not archived): committed while
 *    the syncfs was still running when the crash came, so no 250 was sent → row removed (and
 *    its received/action counters taken back, as the intake does when it answers 451).
 *  - rows of durable groups whose spool file is missing: acknowledged (250 sent), and the file
 *    went some other way — a data dir restored from a backup whose files were copied after the
 *    database, a hand-deleted file. The record and its counters stay; its unfinished
 *    deliveries become `failed` with the reason (queue list, stats page), loudly logged.
 *    Removing it as "never acknowledged" erased the history of mail that did get its 250.
 *  - rows `done` whose spool file is still there: removed unless a delivery needs it.
 * Failure: file-system and SQLite errors are thrown (serve refuses to start rather than run
 * with a spool it does not understand); a message whose archive copy fails stays spooled.
 */
import type { Database } from "bun:sqlite";
import { access } from "node:fs/promises";
import { readFileBytes } from "../read-file.ts";
import { join } from "node:path";
import type { Logger } from "../log/logger.ts";
import { readIntakeMarks, uncertainSpoolRows, writeIntakeMarks } from "../store/intake-marks.ts";
import { uncountIntakeRows } from "../store/intake-rows.ts";
import { deleteMessages, existingMessageIds, failDeliveriesWithoutFile, MISSING_FILE_PREFIX, releaseDeliveriesCreatedBefore, markMessageDone, messagesNeedingSpool, pendingMessages } from "../store/messages.ts";
import { archiveRelativePath } from "../act/archive.ts";
import type { Finisher } from "../act/finish.ts";
import type { Spool, SpoolListing } from "./spool.ts";
import { commitWhenFree } from "./wal-sync.ts";

/** Rows read per page while finishing pending messages (bounds memory after a long outage). */
const RECOVERY_PAGE_ROWS = 1000;

export interface RecoveryReport {
  temporaryRemoved: number;
  orphaned: string[];
  finished: number;
  /** Rows removed: committed, but their spool file never became durable (no 250 was sent). */
  unacknowledged: string[];
  /** Acknowledged messages whose spool file is gone: kept, their deliveries failed. */
  missing: string[];
  released: number;
}

export async function recoverSpool(db: Database, spool: Spool, finisher: Finisher, logger: Logger, dataDir: string): Promise<RecoveryReport> {
  await spool.ensureDirs();
  const report: RecoveryReport = { temporaryRemoved: 0, orphaned: [], finished: 0, unacknowledged: [], missing: [], released: 0 };
  const listing = await spool.list();
  await clearUnfinishedAndForeign(spool, logger, listing, report);
  const withRow = existingMessageIds(db, listing.messages);
  const onDisk = new Set(listing.messages);
  await quarantineRowless(spool, logger, listing.messages, withRow, report);
  const uncertain = await checkUncertainRows(db, spool, logger, dataDir, onDisk, report);
  const withoutFile = (id: string, pending: boolean): void =>
    uncertain.has(id) ? dropUnacknowledged(db, logger, id, report) : keepWithoutFile(db, logger, id, report, pending);
  await finishPending(db, finisher, dataDir, onDisk, report, (id) => withoutFile(id, true));
  dropDeliveriesWithoutFile(db, onDisk, (id) => withoutFile(id, false));
  await finisher.idle();
  for (const id of listing.messages) {
    if (withRow.has(id) && (await finisher.release(id))) report.released++;
  }
  logger.info("spool recovered", {
    temporary_removed: report.temporaryRemoved,
    orphaned: report.orphaned.length,
    finished: report.finished,
    unacknowledged: report.unacknowledged.length,
    acknowledged_without_file: report.missing.length,
    released: report.released,
  });
  return report;
}

/** `.tmp` files (writes that never finished) go; files mailgw never writes are moved aside. */
async function clearUnfinishedAndForeign(spool: Spool, logger: Logger, listing: SpoolListing, report: RecoveryReport): Promise<void> {
  for (const name of listing.temporary) {
    await spool.removeTemporary(name);
    report.temporaryRemoved++;
    logger.info("removed unfinished spool write", { file: name });
  }
  for (const name of listing.foreign) {
    const to = await spool.quarantine(name);
    report.orphaned.push(to);
    logger.warn("unknown file in spool moved aside", { file: name, moved_to: to });
  }
}

/**
 * Fsynced but never committed: the client got no 250 and will retry. Kept aside, never deleted.
 * The one other way there: a database restored from a backup older than the spool (the live
 * spool kept, or copied back over it). Those messages did get their 250, and nothing sends
 * them now: the log must not tell the admin they were never acknowledged.
 */
async function quarantineRowless(spool: Spool, logger: Logger, ids: readonly string[], withRow: Set<string>, report: RecoveryReport): Promise<void> {
  for (const id of ids) {
    if (withRow.has(id)) continue;
    const to = await spool.quarantine(`${id}.eml`);
    report.orphaned.push(to);
    logger.warn("spool file without a record moved aside", { id, moved_to: to, hint: ROWLESS_HINT });
  }
}

const ROWLESS_HINT =
  "after a crash: never acknowledged, the sender retries; after the database was restored from a backup older " +
  "than the spool: accepted and not delivered, send it to mailgw again (README: Backups)";

/** Rows `spooled` (250 sent, post-250 work unfinished): finished now, a page at a time. */
async function finishPending(db: Database, finisher: Finisher, dataDir: string, onDisk: Set<string>, report: RecoveryReport, withoutFile: (id: string) => void): Promise<void> {
  let cursor = "";
  for (;;) {
    const page = pendingMessages(db, cursor, RECOVERY_PAGE_ROWS);
    if (page.length === 0) break;
    cursor = page[page.length - 1]?.id ?? cursor;
    for (const m of page) {
      if (onDisk.has(m.id)) {
        finisher.schedule({ id: m.id, receivedAt: m.receivedAt, archive: m.archive });
        report.finished++;
        continue;
      }
      // No spool file: archived and the crash came before "done" (acknowledged); else see withoutFile.
      const rel = m.archive ? archiveRelativePath(m.id, m.receivedAt) : null;
      if (rel !== null && (await access(join(dataDir, rel)).then(() => true, () => false))) {
        markMessageDone(db, m.id, rel);
      } else {
        withoutFile(m.id);
      }
    }
    await finisher.idle();
  }
}

/** Messages done at intake (forward, webhook) whose deliveries need a file that is not there. */
function dropDeliveriesWithoutFile(db: Database, onDisk: Set<string>, withoutFile: (id: string) => void): void {
  let cursor = "";
  for (;;) {
    const ids = messagesNeedingSpool(db, cursor, RECOVERY_PAGE_ROWS);
    if (ids.length === 0) break;
    cursor = ids[ids.length - 1] ?? cursor;
    for (const id of ids) if (!onDisk.has(id)) withoutFile(id);
  }
}

/**
 * Rows committed by groups whose syncfs may not have finished: each spool file must hold
 * exactly the bytes recorded (size, CRC-32); one that does not was never acknowledged. Then
 * every remaining row counts as durable (this pass is not repeated at the next start).
 * Returns the ids of those rows: only they can be missing their file for want of a 250.
 */
async function checkUncertainRows(db: Database, spool: Spool, logger: Logger, dataDir: string, onDisk: Set<string>, report: RecoveryReport): Promise<Set<string>> {
  const marks = readIntakeMarks(db);
  const uncertain = new Set<string>();
  for (const row of uncertainSpoolRows(db, marks.durableSeq)) {
    uncertain.add(row.id);
    // The spool file, else (written straight there, or already copied) the archive file.
    const inSpool = onDisk.has(row.id);
    const path = inSpool ? spool.pathOf(row.id) : row.archivePath ? join(dataDir, row.archivePath) : null;
    if (path === null) continue; // no file at all: dropped below as unacknowledged
    const bytes = await readFileBytes(path).catch(() => null);
    if (bytes && bytes.byteLength === row.size && Bun.hash.crc32(bytes) === row.spoolCrc) continue;
    if (bytes) {
      const to = inSpool ? await spool.quarantine(`${row.id}.eml`) : await spool.quarantineFrom(path);
      onDisk.delete(row.id);
      report.orphaned.push(to);
      logger.warn("incomplete spool file (crash before the reply was sent) moved aside", { id: row.id, moved_to: to });
    }
    dropUnacknowledged(db, logger, row.id, report);
  }
  db.transaction(() => {
    if (marks.durableSeq !== marks.lastSeq) writeIntakeMarks(db, { ...marks, durableSeq: marks.lastSeq });
    releaseDeliveriesCreatedBefore(db, Number.MAX_SAFE_INTEGER); // what is left was checked
  }).immediate();
  return uncertain;
}

/**
 * An acknowledged message whose spool file is gone: see the header. `pending`: its post-250 work
 * was unfinished; else only deliveries need the file, and those a start before this one already
 * failed for it are not reported again (each start would log the same error until they are dropped).
 */
function keepWithoutFile(db: Database, logger: Logger, id: string, report: RecoveryReport, pending: boolean): void {
  const failed = db.transaction(() => {
    markMessageDone(db, id, null);
    return failDeliveriesWithoutFile(db, id, MISSING_FILE_ERROR, Date.now());
  }).immediate();
  if (!pending && failed === 0) return;
  report.missing.push(id);
  logger.error("accepted message's spool file is missing (data dir restored from a backup? file deleted?): record kept, its deliveries failed", { id });
}

const MISSING_FILE_ERROR = `${MISSING_FILE_PREFIX} at start: the message was accepted, but its file is gone (data dir restored from a backup taken while it was being delivered, or deleted); nothing left to send`;

/** A record whose spool file never became durable: its client never got 250. */
function dropUnacknowledged(db: Database, logger: Logger, id: string, report: RecoveryReport): void {
  db.transaction(() => {
    uncountIntakeRows(db, [id]);
    deleteMessages(db, [id]);
  }).immediate();
  report.unacknowledged.push(id);
  logger.warn("record without its spool file (crash before the reply was sent) removed", { id });
}

/**
 * Retries messages left `spooled` by a failed archive, and releases deliveries an intake could
 * not release (called periodically by the pipeline; only what is older than `olderThanMs`, and
 * deliveries only if created before `releaseBeforeMs`: the oldest of a group still being stored).
 */
export async function sweepPending(db: Database, finisher: Finisher, olderThanMs: number, releaseBeforeMs = olderThanMs): Promise<number> {
  const before = Math.min(olderThanMs, releaseBeforeMs);
  // No fsync needed (recovery releases them again after a crash); never waits on the event loop.
  await commitWhenFree(db, () => void releaseDeliveriesCreatedBefore(db, before));
  let n = 0;
  let cursor = "";
  for (;;) {
    const page = pendingMessages(db, cursor, RECOVERY_PAGE_ROWS);
    if (page.length === 0) return n;
    cursor = page[page.length - 1]?.id ?? cursor;
    for (const m of page) {
      if (m.receivedAt >= olderThanMs || finisher.isInFlight(m.id)) continue;
      finisher.schedule({ id: m.id, receivedAt: m.receivedAt, archive: m.archive });
      n++;
    }
  }
}
