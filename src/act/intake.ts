/**
 * Intake with group commit: makes an accepted message durable before its `250`.
 *
 * Messages that finished DATA meanwhile form a group (at most MAX_GROUPS_IN_FLIGHT at a time;
 * under load the next group is whatever arrived during the last one, so every fixed cost is
 * shared by more messages the busier the gateway is). With the spool writer thread
 * (spool-flusher.ts, Linux), the group is ONE message to that thread, which
 *   1. commits ONE SQLite transaction on its own connection: the group's rows (with each spool
 *      file's size and CRC-32 and the group's number), deliveries held back, counters — no
 *      fsync; the event loop neither runs this SQL nor waits for the write lock, which the
 *      delivery thread holds at times (SQLite's busy handler sleeps a whole millisecond);
 *   2. writes each message kept in memory to its `.tmp`, renames every file to `<id>.eml`,
 *      then ONE syncfs(2) makes the files, the renames and the WAL durable together (a WAL on
 *      another file system is fsynced after it);
 *   3. releases the group's deliveries (claimable now) and answers;
 * only then are the group's promises resolved (the callers answer 250).
 * A crash before step 2 finished leaves rows whose files may be missing or incomplete: the
 * group's number is above the durable mark, so recovery checks those rows against their
 * files (size, CRC) and drops the ones that do not match — their clients never got 250.
 * If the thread cannot open the database, steps 1 and 3 run here on the event loop (the same
 * SQL, store/intake-rows.ts). Without the writer thread (no syncfs): each file is written,
 * fsynced and renamed first, then the rows are committed and the WAL and the spool directory
 * are fsynced. No fsync, and no per-message file I/O of small messages, ever runs on the
 * event loop.
 *
 * Trusts: rows built by the pipeline. Failure: an entry whose file cannot be written is
 * rejected alone (its rows deleted again); a failed transaction or syncfs rejects its whole
 * group, removes the group's spool files and (after the commit) deletes the rows again, later
 * if the database refuses now — no client got 250, nothing lost, nothing half-written.
 * Callers turn rejections into 451 4.3.0.
 */
import type { Database } from "bun:sqlite";
import { unlink } from "node:fs/promises";
import { bumpCounterBatch } from "../store/counters.ts";
import { readIntakeMarks, writeIntakeMarks, type IntakeMarks } from "../store/intake-marks.ts";
import { databaseFile, databaseFileProblem, type DatabaseFile } from "../store/db-file.ts";
import { insertIntakeGroup, intakeCounterIncrements, markUnwritten, releaseIntakeDeliveries, unwrittenRowIds, type IntakeRowItem } from "../store/intake-rows.ts";
import { deleteMessages, existingMessageIds, type MessageRow, type NewDelivery } from "../store/messages.ts";
import type { IncomingFile, SpoolJob } from "../spool/incoming-file.ts";
import type { Spool } from "../spool/spool.ts";
import { IntakeRowsError, type SpoolFlusher } from "../spool/spool-flusher.ts";
import { WalSync } from "../spool/wal-sync.ts";

/**
 * Commit groups under way at once: while the writer thread syncs one group, the next is
 * committed and queued behind it, so the thread never waits for the event loop between two
 * syncfs calls. More would only make smaller groups.
 */
const MAX_GROUPS_IN_FLIGHT = 2;
/** First wait before deleting a failed group's rows again (the database refused); doubles to a minute. */
export const DELETE_RETRY_MS = 1_000;
const DELETE_RETRY_MAX_MS = 60_000;

export interface IntakeEntry {
  row: MessageRow;
  /**
   * The message's spool file, written as it arrived (installed under its final name by the
   * intake), or null when nothing is kept (reject, plain drop).
   */
  file: IncomingFile | null;
  deliveries: NewDelivery[];
  /**
   * Where the writer thread puts the file instead of `spool/<id>.eml` (an archive-only
   * message goes straight to its archive path, recorded in the row); null: the spool.
   */
  finalPath?: string | null;
}

interface Waiting {
  entry: IntakeEntry;
  /** For the writer thread: what to write and rename (null without it, or without a file). */
  job: SpoolJob | null;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export interface IntakeStats {
  /** Commit groups run and messages committed (for the bench and metrics). */
  groups: number;
  committed: number;
  largestGroup: number;
  /**
   * Time until the directory fsync (async; no writer thread) was done, in SQLite transactions
   * on the event loop (synchronous, no fsync), until the WAL fsync (async) was done, ms.
   */
  dirSyncMs: number;
  sqliteMs: number;
  walSyncMs: number;
  /** Time waiting for the group's spool writes and syncfs (in the writer thread), ms. */
  flushMs: number;
}

export class Intake {
  private ready: Waiting[] = [];
  private scheduled = false;
  private groupsInFlight = 0;
  /** Entries handed in and not yet resolved or rejected. */
  private inFlight = 0;
  /**
   * Their deliveries' creation times (held back until their group is durable): the minute sweep
   * releases only older ones. A group whose write or sync hangs for over a minute (a disk that
   * stopped answering) would otherwise have its deliveries made due before their files exist.
   */
  private readonly heldBack = new Map<IntakeEntry, number>();
  private idleWaiters: (() => void)[] = [];
  /** The spool writer thread (syncfs); null: each file and the directory are fsynced. */
  private flusher: SpoolFlusher | null = null;
  /** The flusher's syncfs also covers the WAL (same file system): no separate WAL fsync. */
  private flushCoversWal = false;
  /** Read from the database at the first group (after recovery has settled them). */
  private marks: IntakeMarks | null = null;
  /** Rows committed here whose file failed, not yet marked UNWRITTEN_SEQ (see releaseDeliveries). */
  private unwritten: string[] = [];
  /** The database file as opened: rows are not committed into it once deleted or replaced. */
  private readonly dbFile: DatabaseFile | null;
  readonly stats: IntakeStats = { groups: 0, committed: 0, largestGroup: 0, dirSyncMs: 0, sqliteMs: 0, walSyncMs: 0, flushMs: 0 };

  constructor(
    private readonly db: Database,
    private readonly spool: Spool,
    private readonly wal: WalSync = new WalSync(db),
  ) {
    this.dbFile = databaseFile(db.filename);
  }

  /**
   * From now on, spool files are written and made durable per group by `flusher` (see
   * spool-flusher.ts); `coversWal`: its syncfs flushes the WAL's file system too.
   */
  useFlusher(flusher: SpoolFlusher | null, opts: { coversWal: boolean }): void {
    this.flusher = flusher;
    // Marks the writer thread advanced are in the database (read again when needed here).
    this.marks = null;
    this.flushCoversWal = flusher !== null && opts.coversWal;
  }

  /** Resolves once the entry's file (if any) and rows are durable; rejects if not stored. */
  commit(entry: IntakeEntry): Promise<void> {
    this.inFlight++;
    const createdAt = entry.deliveries[0]?.createdAt;
    if (createdAt !== undefined) this.heldBack.set(entry, createdAt);
    const settled = new Promise<void>((resolve, reject) => {
      const file = entry.file;
      const waiting: Waiting = { entry, job: null, resolve, reject };
      if (file === null) return this.enqueue(waiting);
      const flusher = this.flusher;
      const finalPath = entry.finalPath ?? null;
      if (!flusher && finalPath) return reject(new Error("a final path other than the spool needs the spool writer thread"));
      const ready = flusher
        ? file.spoolJob().then((job) => void (waiting.job = finalPath ? { ...job, final: finalPath } : job))
        : file.install({ fsync: true });
      ready.then(
        () => this.enqueue(waiting),
        (err: unknown) => void file.abort().then(() => reject(err)),
      );
    });
    const done = (): void => {
      this.inFlight--;
      this.heldBack.delete(entry);
      this.notifyIdle();
    };
    settled.then(done, done);
    return settled;
  }

  /**
   * The sync that ends every commit group, with nothing of its own: resolves when it goes through
   * now (the syncfs, or the spool directory's and the WAL's fsyncs). For /healthz after a message
   * got 451 because that sync failed (store/write-probe.ts): a file written without it proves nothing.
   */
  async syncNow(): Promise<void> {
    const flusher = this.flusher;
    if (flusher) await Promise.all([flusher.flush([]), this.flushCoversWal ? undefined : this.wal.sync()]);
    else await Promise.all([this.spool.syncDir(), this.wal.sync()]);
  }

  /** The oldest creation time of deliveries whose message is still being stored; Infinity: none. */
  heldBackSince(): number {
    let oldest = Infinity;
    for (const t of this.heldBack.values()) oldest = Math.min(oldest, t);
    return oldest;
  }

  /** Resolves when everything handed in so far has been committed or rejected. */
  drain(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private enqueue(w: Waiting): void {
    this.ready.push(w);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || this.groupsInFlight >= MAX_GROUPS_IN_FLIGHT || this.ready.length === 0) return;
    this.scheduled = true;
    // setImmediate lets every message that finished in this turn of the loop join the group.
    setImmediate(() => {
      this.scheduled = false;
      if (this.groupsInFlight >= MAX_GROUPS_IN_FLIGHT || this.ready.length === 0) return;
      const group = this.ready;
      this.ready = [];
      this.groupsInFlight++;
      void this.commitGroup(group).finally(() => {
        this.groupsInFlight--;
        this.schedule();
      });
    });
  }

  /** Commits one group: rows first (not yet durable), then the files and ONE sync for all. */
  private async commitGroup(group: Waiting[]): Promise<void> {
    // Those whose bytes go to a file (which a failed commit must remove).
    const spooled = group.filter((w) => w.entry.file !== null);
    const items = rowItems(group);
    const flusher = this.flusher;
    const inWriter = flusher !== null && flusher.rowsUnavailable === null;
    let failures: (string | null)[];
    let seq: number | null = null;
    try {
      if (inWriter) failures = await this.flushWithRows(flusher, spooled, items);
      else ({ failures, seq } = await this.commitHere(spooled, items));
    } catch (err) {
      const rowsCommitted = !(err instanceof IntakeRowsError);
      // Noted before the first await: the other group in flight may move the durable mark past these rows meanwhile.
      if (!inWriter && rowsCommitted) this.unwritten.push(...group.map((w) => w.entry.row.id));
      await this.fail(group, spooled, err, rowsCommitted);
      return;
    }
    // As above: before fail() awaits, so the next releaseDeliveries marks them whichever group runs it.
    if (!inWriter) this.unwritten.push(...unwrittenRowIds(items, failures));
    const failed = spooled.filter((_, i) => failures[i] != null);
    if (failed.length > 0) {
      const failedSet = new Set(failed);
      await this.fail(failed, failed, new Error(`writing the spool file failed: ${failures.find((f) => f != null) ?? ""}`), true);
      group = group.filter((w) => !failedSet.has(w));
    }
    // The writer thread released the deliveries itself, before it answered.
    if (!inWriter) this.releaseDeliveries(items, failures, seq);
    this.stats.groups++;
    this.stats.committed += group.length;
    this.stats.largestGroup = Math.max(this.stats.largestGroup, group.length);
    for (const w of group) {
      w.entry.file?.installed();
      w.resolve();
    }
  }

  /** The writer thread commits the rows, writes the files, syncs, releases the deliveries. */
  private async flushWithRows(flusher: SpoolFlusher, spooled: Waiting[], items: IntakeRowItem[]): Promise<(string | null)[]> {
    const t0 = performance.now();
    const failures = await flusher.flush(spoolJobs(spooled), items);
    this.stats.flushMs += performance.now() - t0;
    return failures;
  }

  /** Rows committed on this connection (no fsync), then the files and the sync. */
  private async commitHere(spooled: Waiting[], items: IntakeRowItem[]): Promise<{ failures: (string | null)[]; seq: number }> {
    const marks = (this.marks ??= readIntakeMarks(this.db));
    const t0 = performance.now();
    let seq = 0;
    try {
      const problem = this.dbFile === null ? null : databaseFileProblem(this.dbFile);
      if (problem !== null) throw new Error(problem.detail);
      this.wal.commitUnsynced(() => void (seq = insertIntakeGroup(this.db, items, marks)));
      marks.lastSeq = seq;
    } catch (err) {
      throw new IntakeRowsError(`committing the rows failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    this.stats.sqliteMs += performance.now() - t0;
    // The durable mark advances to `seq` with releaseDeliveries.
    return { failures: await this.makeDurable(spooled), seq };
  }

  /**
   * The group's deliveries become claimable (before the callers hear 250 and wake the worker).
   * If this fails they stay held back until the pipeline's sweep or the next start releases them.
   */
  private releaseDeliveries(items: IntakeRowItem[], failures: (string | null)[], seq: number | null): void {
    const marks = this.marks;
    // Not lastSeq: the next group may have committed its rows meanwhile, not yet durable.
    const durableSeq = marks !== null && seq !== null ? Math.max(marks.durableSeq, seq) : null;
    try {
      // The advanced durable mark too (see syncfs-worker.ts releaseRows for why), with the rows
      // whose file failed marked: the mark never passes them unmarked (UNWRITTEN_SEQ).
      this.wal.commitUnsynced(() => {
        markUnwritten(this.db, this.unwritten);
        if (marks !== null) writeIntakeMarks(this.db, { ...marks, durableSeq: durableSeq ?? marks.durableSeq });
        releaseIntakeDeliveries(this.db, items, failures);
      });
      if (marks !== null && durableSeq !== null) marks.durableSeq = durableSeq;
      this.unwritten = [];
    } catch {
      // Released later (sweep, recovery), the mark and the marking with the next group; the
      // messages themselves are stored.
    }
  }

  /**
   * After the rows' commit: the spool files written and renamed (writer thread) and everything
   * synced. Resolves with one failure text (or null) per entry of `spooled`; rejects when the
   * sync itself failed.
   */
  private async makeDurable(spooled: Waiting[]): Promise<(string | null)[]> {
    const t0 = performance.now();
    const flusher = this.flusher;
    if (flusher) {
      const jobs = spoolJobs(spooled);
      const walSync = this.flushCoversWal ? Promise.resolve() : this.timed(this.wal.sync(), "walSyncMs");
      const [failures] = await Promise.all([flusher.flush(jobs), walSync]);
      this.stats.flushMs += performance.now() - t0;
      return failures;
    }
    // Prepared for a writer thread that has stopped since: nothing was written, the client retries.
    if (spooled.some((w) => w.job !== null)) throw new Error("the spool writer thread stopped");
    // Files were fsynced and renamed by install(): their renames and the WAL remain.
    const dirSync = spooled.length > 0 ? this.timed(this.spool.syncDir(), "dirSyncMs") : Promise.resolve();
    await Promise.all([dirSync, this.timed(this.wal.sync(), "walSyncMs")]);
    return spooled.map(() => null);
  }

  private async timed(p: Promise<void>, stat: "walSyncMs" | "dirSyncMs"): Promise<void> {
    const t0 = performance.now();
    await p;
    this.stats[stat] += performance.now() - t0;
  }

  /**
   * Rejects `group` with `err`: its rows deleted again (when committed), its spool files
   * removed under either name. A crash meanwhile leaves rows above the durable mark, whose
   * files recovery checks.
   */
  private async fail(group: Waiting[], spooled: Waiting[], err: unknown, rowsCommitted: boolean): Promise<void> {
    if (rowsCommitted) await this.deleteRows(group.map((w) => w.entry.row));
    await Promise.all(
      spooled.map(async (w) => {
        await w.entry.file?.abort();
        await this.spool.remove(w.entry.row.id).catch(() => false);
        if (w.entry.finalPath) await unlink(w.entry.finalPath).catch(() => undefined);
      }),
    );
    await this.spool.syncDir().catch(() => undefined);
    for (const w of group) w.reject(err);
  }

  /**
   * Deletes the rows of messages whose clients get 451. When the database refuses (a full disk
   * fails a delete too), it tries again later without holding the reply back: a row left behind
   * would stand for a message nobody has (an archive row without its file, a delivery failing
   * with "spool file missing"), and recovery no longer checks it once the durable mark passed it.
   */
  private deleteRows(rows: readonly MessageRow[], wait = DELETE_RETRY_MS): Promise<void> {
    return this.wal
      .commitWhenFree(() => {
        // Only the rows found were counted: a group the writer thread died before committing
        // (its error is not an IntakeRowsError) has none, and taking its counts back anyway
        // left received/action counters below the mail actually received.
        const found = existingMessageIds(this.db, rows.map((r) => r.id));
        deleteMessages(this.db, [...found]);
        bumpCounterBatch(this.db, intakeCounterIncrements(rows.filter((r) => found.has(r.id))), -1);
      })
      .catch(() => {
        setTimeout(() => void this.deleteRows(rows, Math.min(wait * 2, DELETE_RETRY_MAX_MS)), wait).unref();
      });
  }

  private notifyIdle(): void {
    if (this.inFlight > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

/** The group's rows for the SQL (store/intake-rows.ts); job: the index among the spooled ones. */
function rowItems(group: readonly Waiting[]): IntakeRowItem[] {
  let jobs = 0;
  return group.map((w) => ({
    row: w.entry.row,
    spoolCrc: w.entry.file?.crc ?? null,
    deliveries: w.entry.deliveries,
    job: w.entry.file !== null ? jobs++ : null,
  }));
}

/** The write jobs of the spooled entries, in order (each prepared before it was enqueued). */
function spoolJobs(spooled: readonly Waiting[]): SpoolJob[] {
  const jobs = spooled.map((w) => w.job).filter((j): j is SpoolJob => j !== null);
  if (jobs.length !== spooled.length) throw new Error("a spool file has no write job");
  return jobs;
}
