/**
 * Group commit of spool files: the spool writer thread (syncfs-worker.ts) writes and renames
 * the files handed to `flush(jobs)`, then ONE syncfs(2) makes every spool file written so far durable
 * — data, inode, and the rename into the spool directory — instead of one fsync per file
 * plus one of the directory. On Linux, syncfs waits for the writes and the journal commit
 * (the man page: "the same guarantees as fsync() called on every file in the file system").
 * This disk does about 350 file fsyncs/s from one thread, 800/s from 16, but one syncfs
 * covering 20 files takes ~1 ms: per-file fsyncs were the ceiling of the whole gateway.
 *
 * The call blocks, so it runs in a worker thread (syncfs-worker.ts), never on the event loop.
 * Started with a database, the thread also commits each intake group's rows on its own
 * connection before writing the group's files (flush with rows), and makes the group's
 * deliveries claimable after the sync: the event loop never waits for SQLite's write lock.
 * Flushes are shared: while MAX_BATCHES_SENT are with the worker, further calls are covered
 * by ONE next flush.
 * Cost note: syncfs also writes back other programs' dirty data on the same file system; a
 * DATA_DIR on its own file system keeps that to mailgw's own writes.
 * Trusts: the spool directory path. Failure: `start` resolves null where syncfs is not
 * available (not Linux, no glibc, the worker does not start in time) or would not report a
 * failed write (Linux before 5.8): the caller then fsyncs each file and the directory. A failed syncfs rejects every flush it covers.
 */
import { release } from "node:os";
import type { IntakeRowItem } from "../store/intake-rows.ts";
import type { SpoolJob } from "./incoming-file.ts";
import type { RowsGroup, WriterDatabase } from "./syncfs-worker.ts";

function ownsWholeBuffer(bytes: Uint8Array): boolean {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer;
}
import { workerSpecifier } from "./worker-url.ts";

/** How long the worker may take to load libc and answer; past it, per-file fsync is used. */
const START_TIMEOUT_MS = 5000;
/** The worker file, below src/ (also listed in scripts/build.ts WORKER_ENTRYPOINTS). */
export const SYNCFS_WORKER_PATH = "spool/syncfs-worker.ts";

type Reply =
  | { kind: "ready"; rows: boolean; rowsReason?: string }
  | { kind: "unsupported"; reason: string }
  | { kind: "synced"; seq: number; errno: number; error?: string; failures: (string | null)[]; groupErrors: (string | null)[] }
  | { kind: "closed" };

/** A flush whose rows the writer thread could not commit: nothing of it was written or kept. */
export class IntakeRowsError extends Error {}

/**
 * Batches handed to the worker at once: the next one waits in the worker's queue while it
 * syncs, so it never idles until the event loop has read a reply. A flush arriving when this
 * many are out joins the batch sent after the oldest completes.
 */
const MAX_BATCHES_SENT = 2;

/**
 * How long `afterSync()` waits for someone else's syncfs before it asks for one: post-250
 * bookkeeping (done marks) rides on the intake's group syncfs under load instead of adding
 * its own, and still becomes durable this soon when the gateway is idle.
 */
const PASSIVE_SYNC_MAX_WAIT_MS = 20;

/** How long close() waits for the worker to close its directory fd. */
const CLOSE_TIMEOUT_MS = 2000;

/** One caller of flush(): its jobs are `jobs[from .. from + count)` of the batch. */
interface Caller {
  from: number;
  count: number;
  /** The intake rows committed by the writer thread before these jobs run. */
  rows: IntakeRowItem[] | null;
  resolve: (failures: (string | null)[]) => void;
  reject: (err: Error) => void;
}

/** What one syncfs covers: the jobs written before it and everyone waiting on it. */
interface Batch {
  seq: number;
  jobs: SpoolJob[];
  callers: Caller[];
}

export class SpoolFlusher {
  private seq = 0;
  /**
   * Batches sent to the worker, oldest first (it runs them in order), and the one collecting
   * flushes until fewer than MAX_BATCHES_SENT are out.
   */
  private sent: Batch[] = [];
  private queued: Batch | null = null;
  /** Sends the queued batch when only afterSync() callers wait in it. */
  private passiveTimer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;
  /** Whether the worker holds the process open now (see keepAlive). */
  private referenced = false;
  private deathListeners: ((reason: string) => void)[] = [];

  private constructor(
    private readonly worker: Worker,
    /** The writer thread commits the intake's rows (flush with rows); else why not. */
    readonly rowsUnavailable: string | null,
  ) {
    worker.onmessage = (event: MessageEvent<Reply>) => this.onReply(event.data);
    worker.onerror = (event) => {
      // A dead worker flushes nothing: what it had fails (451), never a false 250; the owner
      // is told so it can go on without it (onDeath).
      const reason = `syncfs worker failed: ${event.message}`;
      this.closed = true;
      this.failAll(new Error(reason));
      for (const listener of this.deathListeners.splice(0)) listener(reason);
    };
  }

  /** Called once if the worker dies (not on close()). */
  onDeath(listener: (reason: string) => void): void {
    this.deathListeners.push(listener);
  }

  /**
   * Starts the worker for the file system holding `dir`; null when syncfs cannot be used.
   * With `database`, the worker also commits the intake's rows on its own connection.
   */
  static start(dir: string, database?: WriterDatabase, kernel = release()): Promise<{ flusher: SpoolFlusher } | { flusher: null; reason: string }> {
    if (!syncfsReportsErrors(kernel)) {
      return Promise.resolve({ flusher: null, reason: `Linux ${kernel} is older than 5.8: its syncfs does not report write-back errors` });
    }
    return new Promise((resolve) => {
      let worker: Worker;
      try {
        worker = new Worker(workerSpecifier(SYNCFS_WORKER_PATH));
      } catch (err) {
        resolve({ flusher: null, reason: `worker did not start: ${err instanceof Error ? err.message : String(err)}` });
        return;
      }
      const timer = setTimeout(() => {
        worker.terminate();
        resolve({ flusher: null, reason: `worker did not answer in ${START_TIMEOUT_MS} ms` });
      }, START_TIMEOUT_MS);
      worker.onerror = (event) => {
        clearTimeout(timer);
        worker.terminate();
        resolve({ flusher: null, reason: `worker failed: ${event.message}` });
      };
      worker.onmessage = (event: MessageEvent<Reply>) => {
        clearTimeout(timer);
        const reply = event.data;
        if (reply.kind === "ready") {
          // An idle flusher does not keep the process alive; one with a batch out does (keepAlive).
          worker.unref();
          resolve({ flusher: new SpoolFlusher(worker, reply.rows ? null : (reply.rowsReason ?? "no database")) });
        } else {
          worker.terminate();
          resolve({ flusher: null, reason: reply.kind === "unsupported" ? reply.reason : "unexpected reply" });
        }
      };
      worker.postMessage({ kind: "open", dir, database });
    });
  }

  /**
   * Writes and renames `jobs` (in the worker; their `bytes` are moved there: do not use them
   * afterwards), then resolves after a syncfs that started after
   * this call completed without error, with one entry per job: null (written, renamed, durable)
   * or why that job failed (its `.tmp` is gone). Rejects when the syncfs failed.
   * With `rows` (an intake commit group; item.job indexes `jobs`): the worker commits them
   * first, and releases their deliveries after the sync; if their transaction fails, nothing
   * of this flush is written and it rejects with an IntakeRowsError.
   */
  flush(jobs: readonly SpoolJob[] = [], rows: IntakeRowItem[] | null = null): Promise<(string | null)[]> {
    if (this.closed) return Promise.reject(new Error("spool flusher is closed"));
    if (rows !== null && this.rowsUnavailable !== null) return Promise.reject(new IntakeRowsError(`the writer thread has no database: ${this.rowsUnavailable}`));
    return new Promise((resolve, reject) => {
      const batch = (this.queued ??= { seq: -1, jobs: [], callers: [] });
      batch.callers.push({ from: batch.jobs.length, count: jobs.length, rows, resolve, reject });
      batch.jobs.push(...jobs);
      this.sendQueued();
    });
  }

  /**
   * Resolves after a syncfs that started after this call, without asking for one at once: it
   * joins the next flush anyone asks for, or asks itself after PASSIVE_SYNC_MAX_WAIT_MS.
   */
  afterSync(): Promise<void> {
    if (this.closed) return Promise.reject(new Error("spool flusher is closed"));
    return new Promise((resolve, reject) => {
      const batch = (this.queued ??= { seq: -1, jobs: [], callers: [] });
      batch.callers.push({ from: 0, count: 0, rows: null, resolve: () => resolve(), reject });
      if (this.passiveTimer === null) {
        this.passiveTimer = setTimeout(() => {
          this.passiveTimer = null;
          this.sendQueued();
        }, PASSIVE_SYNC_MAX_WAIT_MS);
      }
    });
  }

  /** How many syncfs calls were asked of the worker so far (tests, benchmarks). */
  get syncs(): number {
    return this.seq;
  }

  /** Fails pending flushes, closes the worker's directory fd, stops the worker. */
  async close(): Promise<void> {
    const wasClosed = this.closed;
    this.closed = true;
    this.failAll(new Error("spool flusher is closed"));
    if (!wasClosed) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
        this.worker.onmessage = (event: MessageEvent<Reply>) => {
          if (event.data.kind !== "closed") return;
          clearTimeout(timer);
          resolve();
        };
        this.worker.postMessage({ kind: "close" });
      });
    }
    this.worker.terminate();
  }

  private sendQueued(): void {
    const batch = this.queued;
    if (batch === null || this.closed || this.sent.length >= MAX_BATCHES_SENT) return;
    this.queued = null;
    if (this.passiveTimer !== null) {
      clearTimeout(this.passiveTimer);
      this.passiveTimer = null;
    }
    batch.seq = ++this.seq;
    this.sent.push(batch);
    this.keepAlive();
    // The bytes are moved, not copied (the callers gave them away; each buffer listed once).
    const transfer = new Set<ArrayBuffer>();
    for (const j of batch.jobs) if (j.bytes && ownsWholeBuffer(j.bytes)) transfer.add(j.bytes.buffer as ArrayBuffer);
    try {
      const groups: RowsGroup[] = batch.callers.flatMap((c) => (c.rows ? [{ from: c.from, items: c.rows }] : []));
      this.worker.postMessage({ kind: "sync", seq: batch.seq, jobs: batch.jobs, groups }, [...transfer]);
    } catch (err) {
      // Never left waiting for a reply that cannot come: this batch fails, the next may go.
      this.sent.pop();
      this.keepAlive();
      const error = new Error(`spool writer thread refused the batch: ${err instanceof Error ? err.message : String(err)}`);
      for (const caller of batch.callers) caller.reject(error);
      this.sendQueued();
    }
  }

  private onReply(reply: Reply): void {
    const done = this.sent[0];
    if (reply.kind !== "synced" || done === undefined || reply.seq !== done.seq) return;
    this.sent.shift();
    this.keepAlive();
    let group = 0;
    for (const caller of done.callers) {
      const rowsError = caller.rows ? reply.groupErrors[group++] : null;
      if (rowsError != null) caller.reject(new IntakeRowsError(`committing the rows failed: ${rowsError}`));
      else if (reply.errno === 0) caller.resolve(reply.failures.slice(caller.from, caller.from + caller.count));
      else caller.reject(new Error(reply.error ?? `syncfs of the spool file system failed (errno ${reply.errno})`));
    }
    this.sendQueued();
  }

  private failAll(err: Error): void {
    if (this.passiveTimer !== null) clearTimeout(this.passiveTimer);
    this.passiveTimer = null;
    for (const batch of [...this.sent, this.queued]) for (const caller of batch?.callers ?? []) caller.reject(err);
    this.sent = [];
    this.queued = null;
    this.keepAlive();
  }

  /**
   * Holds the process open while a batch is out. An unref'd worker's reply does not: in serve's
   * stop, once the sockets and the delivery thread were gone, the finisher's wait for the sync
   * of its done marks was all that was left, and the process exited 0 right there, mid-stop
   * (no "stopped" line, the database not closed). The passive timer is a timer: it holds anyway.
   */
  private keepAlive(): void {
    const busy = this.sent.length > 0;
    if (busy === this.referenced) return;
    this.referenced = busy;
    if (busy) this.worker.ref();
    else this.worker.unref();
  }
}

/**
 * Whether syncfs(2) on this kernel reports write-back errors. Before Linux 5.8 it failed only for
 * a bad file descriptor: a disk error while writing a group's files would still end in 250. Such
 * kernels (Ubuntu 20.04's 5.4, Debian 10's 4.19, RHEL 8's 4.18) get the per-file fsync instead,
 * which reports them. A release string that does not parse is trusted (not Linux-like: the
 * worker then finds out whether syncfs exists at all).
 */
export function syncfsReportsErrors(kernel: string): boolean {
  const m = /^(\d+)\.(\d+)/.exec(kernel);
  if (!m) return true;
  const major = Number(m[1]);
  return major > 5 || (major === 5 && Number(m[2]) >= 8);
}
