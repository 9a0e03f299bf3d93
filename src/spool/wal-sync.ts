/**
 * Durable SQLite commits without an fsync on the event loop.
 *
 * The database runs in WAL mode with synchronous=FULL, which makes every COMMIT call fsync()
 * on the WAL file — synchronously, on the thread that runs the SQL, i.e. the event loop.
 * `commitWhenFree(fn)` instead runs the transaction with synchronous=NORMAL (in WAL mode: the
 * commit only write()s its frames into the WAL, no fsync) and then fsyncs the WAL file in the
 * thread pool; the returned promise resolves only after that fsync, so "resolved" means
 * exactly what a FULL commit means: the transaction survives a power loss. (A process crash
 * loses nothing either way: the frames are in the kernel once write() returned.) SQLite
 * itself still syncs the WAL before each checkpoint and the WAL header when it is reused,
 * so the database can never be corrupted, only lose commits no one was told about.
 *
 * Nor does the event loop wait for the write lock (held at times by the spool writer thread,
 * the delivery thread or `mailgw queue`): SQLite's busy handler would sleep right there,
 * stalling every session; commitWhenFree tries again on timers instead.
 * Fsyncs are shared: commits made while one is in flight are covered by ONE next fsync.
 * Not in WAL mode (or an in-memory database): commits run with the connection's own
 * synchronous setting and resolve at once.
 * Trusts: the Database handle. Failure: a failed transaction throws (rolled back, nothing to
 * sync); a failed fsync rejects every commit it was to cover (the caller answers 451).
 */
import type { Database, Statement } from "bun:sqlite";
import { fsyncPath } from "../fs-sync.ts";

export class WalSync {
  private readonly walPath: string | null;
  /** The fsync running now, and the one queued after it (covers commits made meanwhile). */
  private running: Promise<void> | null = null;
  private queued: Promise<void> | null = null;
  /** Replaces the WAL fsync (e.g. a syncfs of the same file system); null = fsync the WAL. */
  private syncer: (() => Promise<void>) | null = null;

  constructor(private readonly db: Database) {
    const mode = db.query<{ journal_mode: string }, []>("PRAGMA journal_mode").get()?.journal_mode;
    const file = db.filename;
    this.walPath = mode === "wal" && file !== "" && file !== ":memory:" ? `${file}-wal` : null;
  }

  /** The WAL file, or null when commits are synced by SQLite itself (not WAL, in memory). */
  get file(): string | null {
    return this.walPath;
  }

  /**
   * Makes commits durable with `syncer` instead of an fsync of the WAL file. Only for a
   * syncer that flushes the WAL's whole file system (SpoolFlusher on the same file system).
   */
  useSyncer(syncer: (() => Promise<void>) | null): void {
    this.syncer = syncer;
  }

  /**
   * Runs `fn` in one IMMEDIATE transaction, committed but NOT yet durable: the caller makes it
   * so (sync(), or a syncfs of the WAL's file system started after this returned) before it
   * tells anyone. Not in WAL mode: committed with the connection's own synchronous setting.
   */
  commitUnsynced(fn: () => void): void {
    // withoutFsync leaves a connection not in WAL mode at its own level.
    withoutFsync(this.db, () => this.db.transaction(fn).immediate());
  }

  /**
   * Runs `fn` in one IMMEDIATE transaction and resolves once the commit is durable on disk.
   * Never waits for the write lock on the event loop: while another connection holds it, the
   * transaction is tried again after a timer (see commitWhenFree below). Where the lock is
   * free, `fn` has run and committed before this returns.
   */
  async commitWhenFree(fn: () => void): Promise<void> {
    await commitWhenFree(this.db, fn);
    return this.sync();
  }

  /** Resolves after an fsync of the WAL file that started after this call. */
  sync(): Promise<void> {
    if (this.queued) return this.queued;
    if (!this.running) return this.start();
    const after = this.running.catch(() => undefined);
    this.queued = after.then(() => {
      this.queued = null;
      return this.start();
    });
    return this.queued;
  }

  private start(): Promise<void> {
    const path = this.walPath;
    if (path === null) return Promise.resolve();
    const run = (this.syncer ? this.syncer() : fsyncPath(path) /* opened anew: a recreated WAL file is the one synced */).finally(() => {
      if (this.running === run) this.running = null;
    });
    this.running = run;
    return run;
  }
}

/** Per connection: the pragmas that switch it to NORMAL and back (null: it is NORMAL or lower). */
const fsyncToggles = new WeakMap<Database, { on: Statement; off: Statement } | null>();

/**
 * Runs `fn` with synchronous=NORMAL on this connection, restoring its own level after. In WAL
 * mode a NORMAL commit only write()s its frames (no fsync, so the write lock is never held
 * across one), while checkpoints still sync (OFF would skip those too and risk corruption).
 * The level is read and the pragmas prepared once per connection: this runs for every commit
 * group and every delivery claim.
 */
export function withoutFsync<T>(db: Database, fn: () => T): T {
  let toggle = fsyncToggles.get(db);
  if (toggle === undefined) {
    // prepare, not the query cache: a PRAGMA's value is read when it is compiled (see preparedToggle).
    const level = db.prepare<{ synchronous: number }, []>("PRAGMA synchronous").get()?.synchronous ?? 2;
    // NORMAL is only crash-safe without fsyncs in WAL mode; a rollback journal keeps its level.
    const wal = db.prepare<{ journal_mode: string }, []>("PRAGMA journal_mode").get()?.journal_mode === "wal";
    toggle = level <= 1 || !wal ? null : preparedToggle(db, "PRAGMA synchronous = NORMAL", `PRAGMA synchronous = ${Number(level)}`);
    fsyncToggles.set(db, toggle);
  }
  if (toggle === null) return fn();
  toggle.on.run();
  try {
    return fn();
  } finally {
    toggle.off.run();
  }
}

/** Per connection: the pragmas that make it give up at once on a held write lock, and its own wait (ms). */
const busyToggles = new WeakMap<Database, { on: Statement; off: Statement; waitMs: number }>();

function busyToggle(db: Database): { on: Statement; off: Statement; waitMs: number } {
  let toggle = busyToggles.get(db);
  if (toggle === undefined) {
    const row = db.prepare<Record<string, number>, []>("PRAGMA busy_timeout").get();
    const ms = Number(Object.values(row ?? {})[0] ?? 0);
    const waitMs = Number.isFinite(ms) && ms > 0 ? ms : 0;
    toggle = { ...preparedToggle(db, "PRAGMA busy_timeout = 0", `PRAGMA busy_timeout = ${waitMs}`), waitMs };
    busyToggles.set(db, toggle);
  }
  return toggle;
}

/**
 * Runs `fn` in one IMMEDIATE transaction without an fsync and without waiting for the write
 * lock: returns false, having done nothing, when another connection (the spool writer or the
 * delivery thread, `mailgw queue`) holds it. For writes that can simply be tried again later
 * (statistics): the event loop never sleeps in SQLite's busy handler nor fsyncs for them. They
 * become durable with the next synced commit (a later WAL fsync or syncfs covers their frames).
 */
export function tryCommitWithoutWaiting(db: Database, fn: () => void): boolean {
  return withoutFsync(db, () => immediateUnlessBusy(db, fn)) !== null;
}

/** One IMMEDIATE transaction with busy_timeout 0: `fn`'s value, or null when the lock is held elsewhere. */
function immediateUnlessBusy<T>(db: Database, fn: () => T): { value: T } | null {
  const toggle = busyToggle(db);
  toggle.on.run();
  try {
    return { value: db.transaction(fn).immediate() };
  } catch (err) {
    if (isBusy(err)) return null;
    throw err;
  } finally {
    toggle.off.run();
  }
}

/** The error commitWhenFree and commitWithShortWaits give up with, as SQLite's busy handler would. */
function lockedError(): Error {
  return Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" });
}

/** Pauses between tries of commitWhenFree: short at first (the writer thread's commits take well under 1 ms). */
const RETRY_DELAYS_MS = [1, 1, 2, 4, 8, 16];

/**
 * Runs `fn` in one IMMEDIATE transaction without an fsync (durable with the next synced commit,
 * or WalSync.commitWhenFree), waiting for a write lock held elsewhere on timers instead of in
 * SQLite's busy handler, which sleeps on the thread that asked (the event loop: every SMTP
 * session would stall with it). Gives up like the busy handler would: after the connection's
 * busy_timeout, rejecting with the SQLITE_BUSY error. A failing `fn` rejects at once.
 */
export async function commitWhenFree(db: Database, fn: () => void): Promise<void> {
  const deadline = performance.now() + busyToggle(db).waitMs;
  for (let attempt = 0; ; attempt++) {
    if (tryCommitWithoutWaiting(db, fn)) return;
    const remaining = deadline - performance.now();
    if (remaining <= 0) throw lockedError();
    const delay = RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)] ?? 16;
    await new Promise((resolve) => setTimeout(resolve, Math.min(delay, remaining)));
  }
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "SQLITE_BUSY" || code === "SQLITE_BUSY_SNAPSHOT";
}

/**
 * Two prepared PRAGMA statements that set a value (`on`) and put it back (`off`), usable from
 * their first run. SQLite applies a PRAGMA's setting when the statement is compiled; a prepared
 * one expires after each run and is recompiled, so applied again, only from its second run on
 * (measured with bun:sqlite: the first run of `PRAGMA busy_timeout = 0` left it at 5000). So
 * both are run once here; compiled in this order, the connection ends with `off`'s value.
 */
function preparedToggle(db: Database, on: string, off: string): { on: Statement; off: Statement } {
  const toggle = { on: db.prepare(on), off: db.prepare(off) };
  toggle.on.run();
  toggle.off.run();
  return toggle;
}

/**
 * Waits between tries of commitWithShortWaits, in ms: SQLite's own busy handler sleeps 1, 2,
 * then 5 ms, while the other connections here hold the write lock for well under a
 * millisecond (a group's rows, a claim, a group of results).
 */
const SHORT_WAITS_MS = [0.05, 0.05, 0.1, 0.1, 0.2, 0.5, 1];
let sleepCell: Int32Array | null = null;

/**
 * Runs `fn` in one IMMEDIATE transaction (at the connection's own synchronous level), waiting
 * for a write lock held elsewhere in steps of 50 µs to 1 ms instead of in SQLite's busy
 * handler, whose first sleep is a whole millisecond: the spool writer thread, on the path of
 * every 250, slept there in one group of five while the delivery thread committed. Blocks the
 * calling thread like the busy handler does: for the spool writer and delivery threads (and the
 * delivery worker's in-thread fallback, which blocked in the busy handler before), never for the
 * event loop's own commits. Gives up like it: after the connection's busy_timeout, with SQLITE_BUSY.
 */
export function commitWithShortWaits<T>(db: Database, fn: () => T): T {
  const deadline = performance.now() + busyToggle(db).waitMs;
  for (let attempt = 0; ; attempt++) {
    const done = immediateUnlessBusy(db, fn);
    if (done !== null) return done.value;
    if (performance.now() >= deadline) throw lockedError();
    sleepCell ??= new Int32Array(new SharedArrayBuffer(4));
    Atomics.wait(sleepCell, 0, 0, SHORT_WAITS_MS[Math.min(attempt, SHORT_WAITS_MS.length - 1)]);
  }
}
