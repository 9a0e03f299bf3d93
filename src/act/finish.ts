/**
 * Post-250 work for accepted messages: the archive copy, then `status = done`, then the
 * spool file is removed once nothing needs it (no delivery still queued, deferred, held,
 * delivering or failed). Runs after the reply, in batches: archive links/copies in
 * parallel, each day directory fsynced once, one transaction marking the batch done.
 *
 * Order is what makes a crash harmless: archive entry durable → row done → spool unlink.
 * A crash before "done" leaves a `spooled` row and its spool file: recovery archives again
 * (same path, `EEXIST` = already there) — never lost, never duplicated.
 * Failure: a message whose archive copy fails is logged and stays `spooled`; the pipeline's
 * sweep retries it. Trusts: ids and times from the message rows.
 */
import type { Database } from "bun:sqlite";
import type { Logger } from "../log/logger.ts";
import { markMessageDone, spoolStillNeeded } from "../store/messages.ts";
import type { Spool } from "../spool/spool.ts";
import { WalSync } from "../spool/wal-sync.ts";
import { describeError } from "../errors.ts";
import type { Archive } from "./archive.ts";
import { createRemovalRetry, type RemovalRetry } from "../spool/removal-retry.ts";


export interface FinishItem {
  id: string;
  receivedAt: number;
  /** Whether a copy goes to the archive. */
  archive: boolean;
}

export class Finisher {
  private queue: FinishItem[] = [];
  private running = false;
  private scheduled = false;
  /** Ids queued or being finished, so a sweep never finishes the same message twice at once. */
  private readonly inFlight = new Set<string>();
  /**
   * Ids whose commit is under way and whose schedule() follows it. Their rows are visible
   * (`spooled`) before their files are durable, and a message whose DATA phase began over a
   * minute ago looks like a straggler to the sweep: it must not be finished (its spool file
   * linked into the archive) before the intake has made that file durable.
   */
  private readonly reserved = new Set<string>();
  private idleWaiters: (() => void)[] = [];
  /** Removals that failed, tried again (stopped at close: the next start's recovery releases them). */
  private readonly removalRetry: RemovalRetry;
  /** Why the last archive copy failed, null once one succeeded: /healthz shows it meanwhile. */
  archiveFailure: string | null = null;

  constructor(
    private readonly db: Database,
    private readonly spool: Spool,
    private readonly archive: Archive,
    private readonly logger: Logger,
    private readonly wal: WalSync = new WalSync(db),
  ) {
    // The row is already `done`, which the minute sweep never looks at: nothing else retries it.
    this.removalRetry = createRemovalRetry(logger, "a finished message's", (id) => this.release(id));
  }

  /** Before committing a message that schedule() will get: from now on the sweep leaves it alone. */
  reserve(id: string): void {
    this.reserved.add(id);
  }

  /** The reserved message was not stored (451): no schedule() follows. */
  unreserve(id: string): void {
    this.reserved.delete(id);
  }

  /** Queues a message for its post-250 work; a message already queued is ignored. */
  schedule(item: FinishItem): void {
    this.reserved.delete(item.id);
    if (this.inFlight.has(item.id)) return;
    this.inFlight.add(item.id);
    this.queue.push(item);
    if (this.running || this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.run();
    });
  }

  /** Queued, being finished, or reserved by a commit under way. */
  isInFlight(id: string): boolean {
    return this.inFlight.has(id) || this.reserved.has(id);
  }

  /** Resolves when everything scheduled so far has been attempted. */
  idle(): Promise<void> {
    if (!this.running && !this.scheduled && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Removes the spool file if the message is done and no delivery needs it any more.
   * Returns whether a file was removed.
   */
  async release(id: string): Promise<boolean> {
    if (this.isInFlight(id) || spoolStillNeeded(this.db, id)) return false;
    return this.spool.remove(id);
  }

  /** No removal is tried again from now on (the database closes; the next start's recovery releases the files). */
  close(): void {
    this.removalRetry.stop();
  }

  private async run(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue;
        this.queue = [];
        await this.finishBatch(batch).catch((err: unknown) => {
          this.logger.error("finishing accepted messages failed, will retry", { error: describeError(err), count: batch.length });
        });
        for (const it of batch) this.inFlight.delete(it.id);
      }
    } finally {
      this.running = false;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private async finishBatch(batch: FinishItem[]): Promise<void> {
    const toArchive = batch.filter((it) => it.archive);
    const results = await this.archive.archiveBatch(
      toArchive.map((it) => ({ id: it.id, receivedAt: it.receivedAt, source: this.spool.pathOf(it.id) })),
    );
    const done: { id: string; archivePath: string | null }[] = batch.filter((it) => !it.archive).map((it) => ({ id: it.id, archivePath: null }));
    toArchive.forEach((it, i) => {
      const r = results[i];
      if (r && r.error === null) {
        done.push({ id: it.id, archivePath: r.archivePath });
        this.archiveFailure = null;
      } else {
        this.archiveFailure = describeError(r?.error);
        this.logger.error("archive failed, message stays spooled", { id: it.id, error: this.archiveFailure });
      }
    });
    if (done.length === 0) return;
    // Durable (WAL fsynced, off the event loop) before any spool file goes; a write lock held
    // elsewhere is waited for on timers, never in SQLite's busy handler on the event loop.
    await this.wal.commitWhenFree(() => {
      for (const d of done) markMessageDone(this.db, d.id, d.archivePath);
    });
    const unneeded = done.filter((d) => !spoolStillNeeded(this.db, d.id));
    await Promise.all(unneeded.map((d) => this.spool.remove(d.id).catch((err: unknown) => this.removalRetry.failed(d.id, err))));
    for (const d of done) this.logger.debug("message done", { id: d.id, archive_path: d.archivePath });
  }
}
