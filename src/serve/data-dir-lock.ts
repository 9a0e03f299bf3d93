/**
 * One `mailgw serve` per data dir (Postfix's master.lock does the same): serve takes an
 * exclusive flock(2) on `DATA_DIR/serve.lock` before anything touches the spool or the database,
 * holds it for the life of the process and releases it on a clean stop. Without it, a second
 * serve on the same DATA_DIR ran its start-up recovery over the first one's spool, removing the
 * `.tmp` of a message still arriving (that client got 451), and then either died on the taken
 * port or ran a second delivery thread over the same queue.
 *
 * Why flock and not a pid file: the kernel drops the lock when the holder dies (kill -9, OOM,
 * power cut), so a crash never leaves a stale lock that blocks systemd's Restart= or the crash
 * recovery. The lock belongs to the open file description, so even in one process a second
 * acquisition on a new fd conflicts: release() (called by a clean stop) closes it. The fd is
 * opened close-on-exec, so no child process can carry the lock past serve's death. The file
 * holds the holder's pid, only for the refusal message: the lock decides, never the pid. The
 * file itself stays: deleting a lock file races with a serve that has just opened it.
 * `mailgw queue` and `mailgw healthcheck` never take this lock: they work beside a running serve.
 * The database is locked the same way (`<DATABASE_URL>.serve.lock` beside it): a second serve
 * with a DATA_DIR of its own but the same DATABASE_URL got past the DATA_DIR lock, and its
 * recovery found none of the first one's queued messages in its own spool: every waiting forward
 * became `failed` ("spool file missing"), and a second delivery thread claimed from the same queue.
 *
 * Trusts: nothing. Failure: held by another serve → CliError (serve exits 1 having changed
 * nothing); the file cannot be created → CliError naming it; no flock here (no libc reachable
 * through bun:ffi, Windows) or on this file system (ENOLCK on some NFS mounts) → a warning, and
 * serve runs unprotected, as it did before this lock existed.
 */
import { closeSync, constants as fsConstants, existsSync, ftruncateSync, mkdirSync, openSync, readFileSync, readSync, writeSync } from "node:fs";
import { constants as osConstants } from "node:os";
import { dirname, join } from "node:path";
import { CliError, describeError } from "../errors.ts";
import { loadLibcFunction } from "../libc.ts";
import type { Logger } from "../log/logger.ts";

export const DATA_DIR_LOCK_FILE = "serve.lock";
/** Appended to the database's path: its lock file, beside it. */
export const DATABASE_LOCK_SUFFIX = ".serve.lock";

export interface DataDirLock {
  /** DATA_DIR/serve.lock (or the database's lock file). */
  readonly path: string;
  /** false: this platform or file system cannot lock (a warning was logged); nothing is held. */
  readonly held: boolean;
  /** Lets the next serve in. Idempotent; a stopped serve leaves the file empty (no pid). */
  release(): void;
}

/** flock(2) operations: the same values on Linux, macOS and the BSDs. */
const LOCK_EX = 2;
const LOCK_NB = 4;
/** errno of a non-blocking flock on a file another open file description has locked. */
const LOCK_HELD_ERRNOS = new Set([osConstants.errno.EWOULDBLOCK, osConstants.errno.EAGAIN]);
/** More than any pid and newline: the file is read only for the refusal message. */
const PID_READ_BYTES = 32;

export interface Flock {
  flock(fd: number, operation: number): number;
  /** The calling thread's errno, read right after a failed call. */
  errno(): number;
}

/** flock(2) from libc, or why this process cannot have it. */
export type FlockSupport = Flock | { unavailable: string };

/** Loaded once per process. */
let loadedFlock: FlockSupport | undefined;

function loadFlock(): FlockSupport {
  if (loadedFlock !== undefined) return loadedFlock;
  try {
    const fn = loadLibcFunction("flock", 2);
    return (loadedFlock = { flock: (fd, operation) => fn.call(fd, operation), errno: () => fn.errno() });
  } catch (err) {
    return (loadedFlock = { unavailable: `cannot load flock from libc (${describeError(err)})` });
  }
}

/**
 * Takes the data dir for this process, or throws a CliError naming DATA_DIR and the holder's pid
 * when another serve has it. Creates DATA_DIR (and the empty lock file) if missing; nothing else.
 * `flock` is libc's; tests pass their own to reach the fallbacks.
 */
export function lockDataDir(dataDir: string, logger: Pick<Logger, "warn">, flock: FlockSupport = loadFlock()): DataDirLock {
  return lockFile(dataDir, join(dataDir, DATA_DIR_LOCK_FILE), flock, logger, {
    refusal: (holder) => `DATA_DIR ${dataDir} is in use by another mailgw serve${holder}; stop it first or use another DATA_DIR`,
    unlocked: "DATA_DIR cannot be locked: nothing stops a second mailgw serve from using it, so run only one",
    fields: { data_dir: dataDir },
    setting: "DATA_DIR",
  });
}

/**
 * Takes the database at `dbPath` for this process (taken after lockDataDir, so a serve refused
 * here holds another DATA_DIR: the message says so). Same rules and fallbacks as lockDataDir.
 */
export function lockDatabase(dbPath: string, logger: Pick<Logger, "warn">, flock: FlockSupport = loadFlock()): DataDirLock {
  return lockFile(dirname(dbPath), `${dbPath}${DATABASE_LOCK_SUFFIX}`, flock, logger, {
    refusal: (holder) => `database ${dbPath} (DATABASE_URL) is in use by another mailgw serve${holder} with another DATA_DIR; stop it first or use another DATABASE_URL`,
    unlocked: "the database cannot be locked: nothing stops a second mailgw serve from using it, so run only one",
    fields: { database: dbPath },
    setting: "DATABASE_URL",
  });
}

interface LockWords {
  /** The refusal, given " (pid N)" or "". */
  refusal(holder: string): string;
  /** The warning when nothing can be locked here. */
  unlocked: string;
  fields: Record<string, string>;
  /** The variable that put the lock file where it is, for the hints. */
  setting: string;
}

function lockFile(dir: string, path: string, flock: FlockSupport, logger: Pick<Logger, "warn">, words: LockWords): DataDirLock {
  if ("unavailable" in flock) return unlocked(path, flock.unavailable, logger, words);
  const file = openLockFile(dir, path, words.setting);
  if (flock.flock(file.fd, LOCK_EX | LOCK_NB) !== 0) {
    const errno = flock.errno();
    if (LOCK_HELD_ERRNOS.has(errno)) {
      const pid = readPid(file.fd);
      closeSync(file.fd);
      throw new CliError(words.refusal(pid === null ? "" : ` (pid ${pid})`));
    }
    closeSync(file.fd);
    return unlocked(path, `flock on ${path} failed (errno ${errno})`, logger, words);
  }
  if (file.writable) writePid(file.fd);
  let released = false;
  return {
    path,
    held: true,
    release() {
      if (released) return;
      released = true;
      // Still holding the lock here, so no newer serve's pid can be erased.
      if (file.writable) ignoreError(() => ftruncateSync(file.fd, 0));
      closeSync(file.fd);
    },
  };
}

/**
 * Whether a serve holds `dataDir`, from the pid it wrote into the lock file, for `mailgw queue`'s
 * notes only (it never takes the lock: a probe could make a serve starting at that moment refuse).
 * null when it cannot tell (no lock file readable). A clean stop empties the file; a crash leaves
 * a pid whose process is gone. A reused pid reads as running: the notes are then left out.
 */
export function serveRunning(dataDir: string): boolean | null {
  let fd: number;
  try {
    fd = openSync(join(dataDir, DATA_DIR_LOCK_FILE), "r");
  } catch {
    return null;
  }
  const pid = readPid(fd);
  closeSync(fd);
  if (pid === null) return false;
  try {
    process.kill(pid, 0);
    // A serve killed (-9) by a shell that has not reaped it yet is a zombie: signalable, gone.
    return !isZombie(pid);
  } catch (err) {
    // EPERM: alive, another user's (serve runs as mailgw, the admin as root or themself).
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function unlocked(path: string, reason: string, logger: Pick<Logger, "warn">, words: LockWords): DataDirLock {
  logger.warn(words.unlocked, { ...words.fields, lock_file: path, reason });
  return { path, held: false, release() {} };
}

/**
 * Opens (creating it if missing) the lock file without truncating it: it may hold the running
 * serve's pid. flock needs no write access, so a lock file left by another user (serve once run
 * as root) is locked read-only, without the pid, rather than refusing to start.
 */
function openLockFile(dir: string, path: string, setting: string): { fd: number; writable: boolean } {
  try {
    mkdirSync(dir, { recursive: true });
    return { fd: openSync(path, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o640), writable: true };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
      try {
        return { fd: openSync(path, "r"), writable: false };
      } catch {
        // fall through: report the first error, it names the real problem
      }
    }
    throw new CliError(`cannot open the lock file ${path}: ${describeError(err)} (${lockFileHint(code, dir, setting)})`);
  }
}

/**
 * Under systemd, ProtectSystem=strict makes everything but the unit's ReadWritePaths read-only.
 * A directory the unit names but that does not exist stays read-only too (systemd skips a
 * missing "-" path), and no install can change that: only creating it does.
 */
function lockFileHint(code: string | undefined, dir: string, setting: string): string {
  if (code !== "EROFS") return `check ${setting} and its permissions`;
  if (existsSync(dir)) return `a read-only file system: under systemd, run \`mailgw systemd install\` again after moving ${setting}, so the unit lets serve write there`;
  return (
    `a read-only file system where ${dir} would be created: create it for the user serve runs as ` +
    `(under systemd the service writes only into existing directories: sudo install -d -m 0750 -o mailgw -g mailgw ${dir}, ` +
    `then run \`mailgw systemd install\` again if ${setting} changed since it last ran)`
  );
}

function writePid(fd: number): void {
  // Only the message of a refused serve reads it: a failure here must not stop this one.
  ignoreError(() => {
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
  });
}

/** The pid the holder wrote, or null (not written yet, unreadable, not ours). */
/** Linux: the state letter in /proc/<pid>/stat (after the command name's closing paren). */
function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z";
  } catch {
    return false;
  }
}

function readPid(fd: number): number | null {
  try {
    const buf = Buffer.alloc(PID_READ_BYTES);
    const n = readSync(fd, buf, 0, buf.byteLength, 0);
    const m = /^(\d{1,10})\s*$/.exec(buf.subarray(0, n).toString("latin1"));
    return m?.[1] ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function ignoreError(fn: () => void): void {
  try {
    fn();
  } catch {
    // see the callers
  }
}
