/**
 * The spool writer thread: commits the intake's rows of a commit group, writes the accepted
 * messages into the spool and calls syncfs(2) on the file system holding it, so neither these
 * writes, the SQL, the wait for SQLite's write lock (the delivery thread holds it at times)
 * nor the blocking system call run on the event loop, and a whole group costs one message
 * each way.
 * Protocol (structured clone messages):
 *   in:  { kind: "open", dir, database? }  → out: { kind: "ready", rows, rowsReason? } or
 *        { kind: "unsupported", reason }. database: { path, walFsync } — this thread opens its
 *        own connection (rows: true) and, when the WAL is on another file system, fsyncs
 *        `walFsync` after each syncfs; rows: false (with why) if it cannot open it.
 *   in:  { kind: "sync", seq, jobs, groups } → out: { kind: "synced", seq, errno, error?,
 *        failures, groupErrors }
 *        1. each group's rows (store/intake-rows.ts) in its own transaction; a group whose
 *           transaction fails gets its error in groupErrors and its jobs are not run;
 *        2. each job: bytes (if any) written to `tmp` (exclusive create), then `tmp` renamed
 *           to `final` (its directory created if missing: a new archive day);
 *        3. ONE syncfs (errno 0 = ok), and the WAL's fsync where asked;
 *        4. only after both: the intake marks written (these groups are durable) and the
 *           groups' deliveries released (claimable), in one transaction; then the reply.
 *        failures[i]: null, or why job i failed (its `tmp` is removed; the others are
 *        unaffected). A group's item.job indexes its own jobs, which start at group.from.
 *   in:  { kind: "close" }                → out: { kind: "closed" }  (the directory fd and the
 *        database are closed: fds belong to the process, terminating the worker would leak them)
 * Trusts: the paths and rows from the main thread. Failure: anything that keeps syncfs from
 * being loaded (not Linux, no glibc) answers "unsupported" and the caller fsyncs per file.
 */
import type { Database } from "bun:sqlite";
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { loadLibcFunction } from "../libc.ts";
import { openDatabase } from "../store/db.ts";
import { databaseFile, databaseFileProblem, type DatabaseFile } from "../store/db-file.ts";
import { readIntakeMarks, writeIntakeMarks, type IntakeMarks } from "../store/intake-marks.ts";
import { insertIntakeGroup, markUnwritten, releaseIntakeDeliveries, unwrittenRowIds, type IntakeRowItem } from "../store/intake-rows.ts";
import type { SpoolJob } from "./incoming-file.ts";
import { commitWithShortWaits } from "./wal-sync.ts";

declare const self: Worker;

/** One intake commit group's rows; its jobs are `jobs[from ..]` of the batch. */
export interface RowsGroup {
  from: number;
  items: IntakeRowItem[];
}

export interface WriterDatabase {
  path: string;
  /** The WAL file when it is on another file system than the spool (fsynced after syncfs). */
  walFsync: string | null;
}

type Request =
  | { kind: "open"; dir: string; database?: WriterDatabase }
  | { kind: "sync"; seq: number; jobs: SpoolJob[]; groups?: RowsGroup[] }
  | { kind: "close" };

interface Syncfs {
  syncfs: (fd: number) => number;
  errno: () => number;
}

function loadSyncfs(): Syncfs {
  const fn = loadLibcFunction("syncfs", 1);
  return { syncfs: (fd) => fn.call(fd), errno: () => fn.errno() };
}

let fd = -1;
let lib: Syncfs | null = null;
let db: Database | null = null;
let dbFile: DatabaseFile | null = null;
let walFsync: string | null = null;
/** Read at the first group: recovery (main thread) has settled them before this thread started. */
let marks: IntakeMarks | null = null;
/** The durable mark as last written to the database by releaseRows. */
let writtenDurableSeq = -1;
/** Rows committed whose job failed, not yet marked UNWRITTEN_SEQ (see releaseRows). */
let unwritten: string[] = [];

self.onmessage = (event: MessageEvent<Request>) => {
  const req = event.data;
  if (req.kind === "open") {
    try {
      if (process.platform !== "linux") throw new Error(`syncfs needs Linux (this is ${process.platform})`);
      lib = loadSyncfs();
      fd = openSync(req.dir, "r");
      if (lib.syncfs(fd) !== 0) {
        const errno = lib.errno();
        closeSync(fd);
        fd = -1;
        throw new Error(`syncfs failed (errno ${errno})`);
      }
      self.postMessage({ kind: "ready", ...openRowsDatabase(req.database) });
    } catch (err) {
      self.postMessage({ kind: "unsupported", reason: err instanceof Error ? err.message : String(err) });
    }
    return;
  }
  if (req.kind === "close") {
    if (fd >= 0) closeSync(fd);
    fd = -1;
    db?.close();
    db = null;
    self.postMessage({ kind: "closed" });
    return;
  }
  const groups = req.groups ?? [];
  const notRun = new Set<number>();
  const groupErrors = groups.map((g) => {
    const error = commitRows(g.items);
    if (error !== null) for (const item of g.items) if (item.job !== null) notRun.add(g.from + item.job);
    return error;
  });
  const failures = req.jobs.map((job, i) => (notRun.has(i) ? "its rows were not committed" : runJob(job)));
  const synced = syncAll();
  if (synced.errno === 0) releaseRows(groups, groupErrors, failures);
  self.postMessage({ kind: "synced", seq: req.seq, ...synced, failures, groupErrors });
};

function openRowsDatabase(database: WriterDatabase | undefined): { rows: boolean; rowsReason?: string } {
  if (!database) return { rows: false, rowsReason: "no database given" };
  try {
    db = openDatabase(database.path);
    dbFile = databaseFile(database.path);
    // Never durable by itself: the syncfs (and walFsync) after each batch is what makes it so.
    db.exec("PRAGMA synchronous = NORMAL");
    walFsync = database.walFsync;
    return { rows: true };
  } catch (err) {
    db = null;
    return { rows: false, rowsReason: err instanceof Error ? err.message : String(err) };
  }
}

/** One group's rows in one transaction; null, or why it failed (rolled back whole). */
function commitRows(items: IntakeRowItem[]): string | null {
  try {
    if (db === null) throw new Error("the writer thread has no database");
    // Rows committed into a deleted or replaced file would be gone at the next start: 451.
    const problem = dbFile === null ? null : databaseFileProblem(dbFile);
    if (problem !== null) throw new Error(problem.detail);
    const conn = db;
    const m = (marks ??= readIntakeMarks(conn));
    const seq = commitWithShortWaits(conn, () => insertIntakeGroup(conn, items, m));
    m.lastSeq = seq;
    return null;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

/** syncfs, then the WAL's own fsync when it lives elsewhere. */
function syncAll(): { errno: number; error?: string } {
  if (lib === null || fd < 0) return { errno: -1, error: "no syncfs" };
  if (lib.syncfs(fd) !== 0) return { errno: lib.errno() };
  if (walFsync === null) return { errno: 0 };
  try {
    const wal = openSync(walFsync, "r");
    try {
      fsyncSync(wal);
    } finally {
      closeSync(wal);
    }
    return { errno: 0 };
  } catch (err) {
    return { errno: -1, error: `fsync of ${walFsync} failed: ${err instanceof Error ? err.message : String(err)}` };
  }
}

/**
 * Everything committed so far is durable: the marks advance and are written now, with the
 * deliveries made claimable, before the replies. Left for the next group's transaction, the
 * last group before a quiet spell (or before an online backup of the database) stayed
 * "not known durable": a backup restored with the files copied first (README) then lost the
 * records of messages acknowledged between the two copies, taken for a crash before the reply.
 */
function releaseRows(groups: RowsGroup[], groupErrors: (string | null)[], failures: (string | null)[]): void {
  if (db === null || marks === null) return;
  const m = marks;
  groups.forEach((g, i) => void (groupErrors[i] === null && unwritten.push(...unwrittenRowIds(g.items, failures.slice(g.from)))));
  const releasing = groups.filter((g, i) => groupErrors[i] === null && g.items.some((item) => item.deliveries.length > 0));
  if (releasing.length === 0 && unwritten.length === 0 && m.lastSeq === writtenDurableSeq) return;
  const conn = db;
  const durable: IntakeMarks = { lastSeq: m.lastSeq, durableSeq: m.lastSeq };
  try {
    // Not fsynced: lost in a crash, the mark is only behind (recovery checks more rows). The rows
    // whose file failed are marked in the same transaction: the mark never passes them unmarked.
    commitWithShortWaits(conn, () => {
      markUnwritten(conn, unwritten);
      writeIntakeMarks(conn, durable);
      for (const g of releasing) releaseIntakeDeliveries(conn, g.items, failures.slice(g.from));
    });
    m.durableSeq = durable.durableSeq;
    writtenDurableSeq = durable.durableSeq;
    unwritten = [];
  } catch {
    // Released later (the pipeline's sweep, recovery), the mark and the marking with the next
    // group (whose own transaction writes the mark as it was: not past unmarked rows); the
    // messages themselves are stored.
  }
}

/** Writes (if it carries bytes) and renames one spool file; null, or why it failed. */
function runJob(job: SpoolJob): string | null {
  try {
    if (job.bytes) writeWhole(job.tmp, job.bytes);
    try {
      renameSync(job.tmp, job.final);
    } catch (err) {
      // A new archive day directory (same file system: this syncfs makes it durable too).
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" || !existsSync(job.tmp)) throw err;
      mkdirSync(dirname(job.final), { recursive: true });
      renameSync(job.tmp, job.final);
    }
    return null;
  } catch (err) {
    try {
      unlinkSync(job.tmp);
    } catch {
      // already gone
    }
    return err instanceof Error ? err.message : String(err);
  }
}

function writeWhole(path: string, bytes: Uint8Array): void {
  const out = openSync(path, "wx", 0o640);
  try {
    let at = 0;
    while (at < bytes.byteLength) {
      const n = writeSync(out, bytes, at, bytes.byteLength - at);
      if (n <= 0) throw new Error(`short write to the spool (${at} of ${bytes.byteLength} bytes)`);
      at += n;
    }
  } finally {
    closeSync(out);
  }
}
