/**
 * Serialises read-modify-write cycles on one rules file between `mailgw rules add` processes.
 * Without it, adds run at once (Ansible with forks, parallel CI jobs) each read the same file,
 * appended their own rule and renamed their version over the others': every one said "added",
 * one rule survived.
 *
 * An exclusive flock(2) on the file itself (symlinks followed, as writeFileAtomic does). The
 * atomic write renames a new file over the locked one, so a waiter that then gets the lock holds
 * a file no longer at the path: it checks the path's inode after locking and starts again on the
 * new file (the usual pattern for flock with rename).
 *
 * Trusts: every writer of the file that matters here is `rules add` (an editor takes no lock).
 * Failure: no flock (no libc through bun:ffi, a file system without locks) or a file that cannot
 * be opened → `fn` runs unlocked, and reports the file's own problem as it did before; the lock
 * still held by another process after WAIT_MS → CliError, file unchanged.
 */
import { closeSync, fstatSync, openSync, statSync } from "node:fs";
import { constants as osConstants } from "node:os";
import { CliError } from "../errors.ts";
import { loadLibcFunction, type LibcFunction } from "../libc.ts";

/** flock(2) operations: the same values on Linux, macOS and the BSDs. */
const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_HELD_ERRNOS = new Set([osConstants.errno.EWOULDBLOCK, osConstants.errno.EAGAIN]);
/** An add takes well under a second; this bounds a holder that hangs. */
const WAIT_MS = 10_000;
const POLL_MS = 20;

let loaded: LibcFunction | null | undefined;

function flockFunction(): LibcFunction | null {
  if (loaded !== undefined) return loaded;
  try {
    return (loaded = loadLibcFunction("flock", 2));
  } catch {
    return (loaded = null);
  }
}

/**
 * The fd of `path`'s file (symlinks followed by open itself), open read-only, or null when it
 * cannot be opened. Not through realpathSync first: its lstat saw ENOENT now and then while
 * another add renamed its new version over the file, and that add then ran unlocked (12 adds at
 * once lost one rule in about one round of 15).
 */
function openTarget(path: string): number | null {
  try {
    return openSync(path, "r");
  } catch {
    return null;
  }
}

/** How often a file that cannot be opened is tried again before `fn` runs unlocked (it reports why). */
const OPEN_TRIES = 5;

/** Whether `fd` is still the file at `path` (no rename has replaced it). */
function stillAtPath(fd: number, path: string): boolean {
  try {
    const held = fstatSync(fd);
    const now = statSync(path);
    return held.ino === now.ino && held.dev === now.dev;
  } catch {
    return false;
  }
}

/** Runs `fn` holding an exclusive lock on the file at `path` (see the module comment). */
export async function withFileLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const flock = flockFunction();
  const deadline = Date.now() + WAIT_MS;
  let openFailures = 0;
  for (;;) {
    const fd = flock === null ? null : openTarget(path);
    if (flock !== null && fd === null && ++openFailures < OPEN_TRIES) {
      // Missing for a moment, as a rename goes over it? Only a file that stays unopenable is its own problem.
      await Bun.sleep(POLL_MS);
      continue;
    }
    if (flock === null || fd === null) return fn();
    if (flock.call(fd, LOCK_EX | LOCK_NB) !== 0) {
      const errno = flock.errno();
      closeSync(fd);
      if (!LOCK_HELD_ERRNOS.has(errno)) return fn();
      if (Date.now() > deadline) {
        throw new CliError(`${path} is locked by another mailgw rules add for more than ${WAIT_MS / 1000} s; nothing written (try again)`);
      }
      await Bun.sleep(POLL_MS);
      continue;
    }
    if (!stillAtPath(fd, path)) {
      closeSync(fd);
      continue;
    }
    try {
      return await fn();
    } finally {
      closeSync(fd);
    }
  }
}
