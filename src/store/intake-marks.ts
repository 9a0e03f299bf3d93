/**
 * The intake's commit marks, in `meta`: every commit group gets the next number (`commit_seq`
 * on its message rows); `intake_durable_seq` is the last group whose rows, spool files and WAL
 * are known to be on disk. Rows of later groups were committed before their group's syncfs
 * finished, so after a crash recovery checks them against their files (size and CRC-32).
 * The marks are written inside each group's own transaction (so they never run ahead of it),
 * and again once its sync is done, with its deliveries' release (so a copy of the database
 * taken after its 250s does not count it as uncertain).
 * Trusts: the database. Failure: SQLite errors are thrown to the caller's transaction.
 */
import type { Database } from "bun:sqlite";

const LAST_SEQ_KEY = "intake_seq";
const DURABLE_SEQ_KEY = "intake_durable_seq";

export interface IntakeMarks {
  /** The highest group number handed out. */
  lastSeq: number;
  /** Groups up to this one are durable. */
  durableSeq: number;
}

export function readIntakeMarks(db: Database): IntakeMarks {
  const value = (key: string): number => {
    const row = db.query<{ value: string }, [string]>(`SELECT value FROM meta WHERE key = ?`).get(key);
    const n = row ? Number(row.value) : 0;
    return Number.isSafeInteger(n) && n > 0 ? n : 0;
  };
  const durableSeq = value(DURABLE_SEQ_KEY);
  return { lastSeq: Math.max(value(LAST_SEQ_KEY), durableSeq), durableSeq };
}

export function writeIntakeMarks(db: Database, marks: IntakeMarks): void {
  db.query(`INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?), (?, ?)`).run(
    LAST_SEQ_KEY, String(marks.lastSeq), DURABLE_SEQ_KEY, String(marks.durableSeq),
  );
}

/** A row committed after the last known-durable group, with the spool file it must have. */
export interface UncertainSpoolRow {
  id: string;
  size: number;
  spoolCrc: number;
  /** Relative to DATA_DIR, when the file is (also) in the archive. */
  archivePath: string | null;
}

/** Rows with a spool file from groups after `durableSeq` (at most a few groups' worth). */
export function uncertainSpoolRows(db: Database, durableSeq: number): UncertainSpoolRow[] {
  return db
    .query<{ id: string; size: number; spool_crc: number; archive_path: string | null }, [number]>(
      `SELECT id, size, spool_crc, archive_path FROM messages WHERE commit_seq > ? AND spool_crc IS NOT NULL ORDER BY commit_seq, id`,
    )
    .all(durableSeq)
    .map((r) => ({ id: r.id, size: r.size, spoolCrc: r.spool_crc, archivePath: r.archive_path }));
}
