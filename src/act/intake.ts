/**
 * Intake with group commit: makes an accepted message durable before its `250`.
 *
 * Each message's spool file was written as it arrived (spool/incoming-file.ts); here it is
 * installed (fsynced when there is no group flush, renamed to `<id>.eml`; async, in the
 * thread pool, in parallel with others). Messages whose file is ready form a group: ONE
 * SQLite transaction for their rows, deliveries and counters, then ONE fsync of the WAL and
 * ONE of the spool directory (makes their renames durable), both in the thread pool — no
 * fsync ever runs on the event loop. Only when both are done are
 * their promises resolved. One group commits at a time; under load the next group is
 * whatever finished meanwhile, so the directory fsync and the WAL fsync are shared by
 * more messages the busier the gateway is.
 *
 * Trusts: rows built by the pipeline. Failure: an entry whose file cannot be written is
 * rejected alone; a failed transaction or directory fsync rejects its whole group, removes
 * the group's spool files and (after a failed fsync) deletes the rows again — no client got
 * 250, nothing lost, nothing half-written. Callers turn rejections into 451 4.3.0.
 */
import type { Database } from "bun:sqlite";
import { bumpCounter, type CounterMetric } from "../store/counters.ts";
import { dayKey } from "../store/db.ts";
import { deleteMessages, insertDelivery, insertMessage, type MessageRow, type NewDelivery } from "../store/messages.ts";
import type { IncomingFile } from "../spool/incoming-file.ts";
import type { Spool } from "../spool/spool.ts";
import type { SpoolFlusher } from "../spool/spool-flusher.ts";
import { WalSync } from "../spool/wal-sync.ts";

export interface IntakeEntry {
  row: MessageRow;
  /**
   * The message's spool file, written as it arrived (installed under its final name by the
   * intake), or null when nothing is kept (reject, plain drop).
   */
  file: IncomingFile | null;
  deliveries: NewDelivery[];
}

interface Waiting {
  entry: IntakeEntry;
  /** Its bytes are in a spool file (which a failed commit must remove). */
  spooled: boolean;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export interface IntakeStats {
  /** Commit groups run and messages committed (for the bench and metrics). */
  groups: number;
  committed: number;
  largestGroup: number;
  /**
   * Time spent in directory fsyncs (async), in SQLite transactions on the event loop
   * (synchronous, no fsync) and until the WAL fsync (async) was done, ms.
   */
  dirSyncMs: number;
  sqliteMs: number;
  walSyncMs: number;
  /** Time waiting for the group's spool flush (syncfs, in a worker), ms. */
  flushMs: number;
}

export class Intake {
  private ready: Waiting[] = [];
  private scheduled = false;
  private committing = false;
  /** Entries handed in and not yet resolved or rejected. */
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];
  /** Group flush of spool files (syncfs); null: each file and the directory are fsynced. */
  private flusher: SpoolFlusher | null = null;
  readonly stats: IntakeStats = { groups: 0, committed: 0, largestGroup: 0, dirSyncMs: 0, sqliteMs: 0, walSyncMs: 0, flushMs: 0 };

  constructor(
    private readonly db: Database,
    private readonly spool: Spool,
    private readonly wal: WalSync = new WalSync(db),
  ) {}

  /** From now on, spool files are made durable per group by `flusher` (see spool-flusher.ts). */
  useFlusher(flusher: SpoolFlusher): void {
    this.flusher = flusher;
  }

  /** Resolves once the entry's file (if any) and rows are durable; rejects if not stored. */
  commit(entry: IntakeEntry): Promise<void> {
    this.inFlight++;
    const settled = new Promise<void>((resolve, reject) => {
      const waiting: Waiting = { entry, spooled: entry.file !== null, resolve, reject };
      if (entry.file === null) return this.enqueue(waiting);
      entry.file.install({ fsync: this.flusher === null }).then(
        () => this.enqueue(waiting),
        (err: unknown) => reject(err),
      );
    });
    const done = (): void => {
      this.inFlight--;
      this.notifyIdle();
    };
    settled.then(done, done);
    return settled;
  }

  /** Resolves when everything handed in so far has been committed or rejected. */
  drain(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private enqueue(w: Waiting): void {
    this.ready.push(w);
    if (this.committing || this.scheduled) return;
    this.scheduled = true;
    // setImmediate lets every file that finished in this turn of the loop join the group.
    setImmediate(() => {
      this.scheduled = false;
      void this.commitLoop();
    });
  }

  /** One group at a time: what arrives meanwhile forms the next (bigger) group. */
  private async commitLoop(): Promise<void> {
    if (this.committing) return;
    this.committing = true;
    try {
      while (this.ready.length > 0) {
        const group = this.ready;
        this.ready = [];
        await this.commitGroup(group);
      }
    } finally {
      this.committing = false;
    }
  }

  /**
   * Commits one group. The SQLite transaction runs on the event loop without an fsync; the
   * WAL fsync and the directory fsync then run together in the thread pool (spool/wal-sync.ts);
   * all must succeed before anyone hears "stored". If the transaction fails, the group's
   * files are removed. If an fsync fails after the rows were committed, the rows are deleted
   * again. A crash between the two leaves rows whose file
   * may be missing: recovery drops exactly those (their clients never got 250).
   */
  private async commitGroup(group: Waiting[]): Promise<void> {
    const spooled = group.filter((w) => w.spooled);
    const t0 = performance.now();
    // Files first: a row is committed only once its file is durable (recovery relies on it).
    const flushed = spooled.length > 0 && this.flusher !== null ? await this.flusher.flush().then(() => null, toError) : null;
    this.stats.flushMs += performance.now() - t0;
    if (flushed) {
      await this.fail(group, spooled, flushed, false);
      return;
    }
    const t1 = performance.now();
    const dirSync = spooled.length > 0 && this.flusher === null ? this.spool.syncDir().then(() => null, toError) : Promise.resolve(null);
    let walSync: Promise<Error | null>;
    try {
      walSync = this.wal
        .commit(() => {
          for (const w of group) {
            insertMessage(this.db, w.entry.row);
            for (const d of w.entry.deliveries) insertDelivery(this.db, d);
          }
          bumpCounters(this.db, group.map((w) => w.entry.row), 1);
        })
        .then(() => null, toError);
      this.stats.sqliteMs += performance.now() - t1;
    } catch (err) {
      await dirSync;
      await this.fail(group, spooled, err, false);
      return;
    }
    const walError = await walSync;
    this.stats.walSyncMs += performance.now() - t1;
    const dirError = await dirSync;
    this.stats.dirSyncMs += performance.now() - t1;
    if (walError || dirError) {
      await this.fail(group, spooled, walError ?? dirError, true);
      return;
    }
    this.stats.groups++;
    this.stats.committed += group.length;
    this.stats.largestGroup = Math.max(this.stats.largestGroup, group.length);
    for (const w of group) w.resolve();
  }

  private async fail(group: Waiting[], spooled: Waiting[], err: unknown, rowsCommitted: boolean): Promise<void> {
    if (rowsCommitted) {
      try {
        await this.wal.commit(() => {
          deleteMessages(this.db, group.map((w) => w.entry.row.id));
          bumpCounters(this.db, group.map((w) => w.entry.row), -1);
        });
      } catch {
        // The rows stay; recovery removes rows whose spool file is missing.
      }
    }
    await Promise.all(spooled.map((w) => this.spool.remove(w.entry.row.id).catch(() => false)));
    await this.spool.syncDir().catch(() => undefined);
    for (const w of group) w.reject(err);
  }

  private notifyIdle(): void {
    if (this.inFlight > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

/** Counters for a group, summed first so each (metric, rule, category) is one statement. */
function bumpCounters(db: Database, rows: readonly MessageRow[], sign: 1 | -1): void {
  const sums = new Map<string, { at: number; metric: CounterMetric; rule: string | null; category: string; n: number }>();
  const add = (at: number, metric: CounterMetric, rule: string | null, category: string): void => {
    const key = JSON.stringify([metric, rule, category, dayKey(at)]);
    const cur = sums.get(key);
    if (cur) cur.n++;
    else sums.set(key, { at, metric, rule, category, n: 1 });
  };
  for (const r of rows) {
    add(r.receivedAt, "received", r.rule, r.category);
    add(r.receivedAt, `action:${r.action}`, r.rule, r.category);
  }
  for (const s of sums.values()) bumpCounter(db, s.at, s.metric, { rule: s.rule, category: s.category }, sign * s.n);
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
