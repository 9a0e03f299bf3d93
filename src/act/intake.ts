/**
 * Intake with group commit: makes an accepted message durable before its `250`.
 *
 * Each message's spool file is written and fsynced as soon as it arrives (async, in the
 * thread pool, in parallel with others). Messages whose file is ready are then committed
 * together: ONE fsync of the spool directory (makes their renames durable) and ONE SQLite
 * transaction (message rows, deliveries, counters). Only then are their promises resolved.
 * Under load a commit group grows to whatever arrived while the previous one ran, so the
 * cost of the directory fsync and the WAL fsync is shared.
 *
 * Trusts: rows built by the pipeline. Failure: an entry whose file cannot be written is
 * rejected alone; a failed directory fsync or transaction rejects its whole group and
 * removes the group's spool files (no row was committed, no client got 250 — nothing lost,
 * nothing half-written). Callers turn rejections into 451 4.3.0.
 */
import type { Database } from "bun:sqlite";
import { bumpCounter, type CounterMetric } from "../store/counters.ts";
import { dayKey } from "../store/db.ts";
import { insertDelivery, insertMessage, type MessageRow, type NewDelivery } from "../store/messages.ts";
import type { Spool } from "../spool/spool.ts";

export interface IntakeEntry {
  row: MessageRow;
  /** The raw message to spool, or null when nothing is kept (reject, plain drop). */
  bytes: Uint8Array | null;
  deliveries: NewDelivery[];
}

interface Waiting {
  entry: IntakeEntry;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export interface IntakeStats {
  /** Commit groups run and messages committed (for the bench and metrics). */
  groups: number;
  committed: number;
  largestGroup: number;
}

export class Intake {
  private ready: Waiting[] = [];
  private committing = false;
  private scheduled = false;
  readonly stats: IntakeStats = { groups: 0, committed: 0, largestGroup: 0 };

  constructor(
    private readonly db: Database,
    private readonly spool: Spool,
  ) {}

  /** Resolves once the entry's file (if any) and rows are durable; rejects if not stored. */
  commit(entry: IntakeEntry): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiting: Waiting = { entry, resolve, reject };
      if (entry.bytes === null) return this.enqueue(waiting);
      this.spool.write({ id: entry.row.id, bytes: entry.bytes }).then(
        () => this.enqueue(waiting),
        (err: unknown) => reject(err),
      );
    });
  }

  /** Waits until everything handed in so far has been committed or rejected. */
  async drain(): Promise<void> {
    while (this.committing || this.scheduled || this.ready.length > 0) await new Promise((r) => setTimeout(r, 5));
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

  private async commitGroup(group: Waiting[]): Promise<void> {
    const spooled = group.filter((w) => w.entry.bytes !== null);
    try {
      if (spooled.length > 0) await this.spool.syncDir();
      this.db.transaction(() => {
        for (const w of group) {
          insertMessage(this.db, w.entry.row);
          for (const d of w.entry.deliveries) insertDelivery(this.db, d);
        }
        bumpCounters(this.db, group.map((w) => w.entry.row));
      }).immediate();
    } catch (err) {
      await Promise.all(spooled.map((w) => this.spool.remove(w.entry.row.id).catch(() => undefined)));
      await this.spool.syncDir().catch(() => undefined);
      for (const w of group) w.reject(err);
      return;
    }
    this.stats.groups++;
    this.stats.committed += group.length;
    this.stats.largestGroup = Math.max(this.stats.largestGroup, group.length);
    for (const w of group) w.resolve();
  }
}

/** Counters for a group, summed first so each (metric, rule, category) is one statement. */
function bumpCounters(db: Database, rows: readonly MessageRow[]): void {
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
  for (const s of sums.values()) bumpCounter(db, s.at, s.metric, { rule: s.rule, category: s.category }, s.n);
}
