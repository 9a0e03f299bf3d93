/**
 * The spool writer thread: writes the accepted messages of a commit group into the spool and
 * calls syncfs(2) on the file system holding it, so neither these writes nor the blocking
 * system call run on the event loop, and a whole group costs one message each way.
 * Protocol (structured clone messages):
 *   in:  { kind: "open", dir }            → out: { kind: "ready" } or { kind: "unsupported", reason }
 *   in:  { kind: "sync", seq, jobs }      → out: { kind: "synced", seq, errno, failures }
 *        each job: bytes (if any) written to `tmp` (exclusive create), then `tmp` renamed to
 *        `final` (its directory created if missing: a new archive day); then ONE syncfs (errno 0 = ok). failures[i]: null, or why job i failed (its
 *        `tmp` is removed; the other jobs are unaffected).
 *   in:  { kind: "close" }                → out: { kind: "closed" }  (the directory fd is closed:
 *        fds belong to the process, terminating the worker would leak it)
 * Trusts: the directory path from the main thread. Failure: anything that keeps syncfs from
 * being loaded (not Linux, no glibc) answers "unsupported" and the caller fsyncs per file.
 */
import { dlopen, FFIType, read } from "bun:ffi";
import { closeSync, existsSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import type { SpoolJob } from "./incoming-file.ts";

declare const self: Worker;

type Request = { kind: "open"; dir: string } | { kind: "sync"; seq: number; jobs: SpoolJob[] } | { kind: "close" };

const LIBC_NAMES = ["libc.so.6", "libc.so"];

interface Syncfs {
  syncfs: (fd: number) => number;
  errno: () => number;
}

function loadSyncfs(): Syncfs {
  let lastError: unknown = null;
  for (const name of LIBC_NAMES) {
    try {
      const lib = dlopen(name, {
        syncfs: { args: [FFIType.i32], returns: FFIType.i32 },
        __errno_location: { args: [], returns: FFIType.ptr },
      });
      return {
        syncfs: (fd) => lib.symbols.syncfs(fd),
        errno: () => {
          const at = lib.symbols.__errno_location();
          return at === null ? -1 : read.i32(at, 0);
        },
      };
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError instanceof Error ? lastError : new Error("libc not found");
}

let fd = -1;
let lib: Syncfs | null = null;

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
      self.postMessage({ kind: "ready" });
    } catch (err) {
      self.postMessage({ kind: "unsupported", reason: err instanceof Error ? err.message : String(err) });
    }
    return;
  }
  if (req.kind === "close") {
    if (fd >= 0) closeSync(fd);
    fd = -1;
    self.postMessage({ kind: "closed" });
    return;
  }
  const failures = req.jobs.map(runJob);
  if (lib === null || fd < 0) {
    self.postMessage({ kind: "synced", seq: req.seq, errno: -1, failures });
    return;
  }
  const rc = lib.syncfs(fd);
  self.postMessage({ kind: "synced", seq: req.seq, errno: rc === 0 ? 0 : lib.errno(), failures });
};

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
