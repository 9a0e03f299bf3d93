/**
 * The spool: `DATA_DIR/spool/<id>.eml` holds every accepted message whose post-250 work
 * (archive copy, deliveries) is not finished. A spool file counts only once it is complete
 * and fsynced under its final name: bytes go to `<id>.tmp` (exclusive create), are fsynced,
 * renamed to `<id>.eml`, and the directory is fsynced (once per batch — group commit, see
 * act/intake.ts).
 *
 * Trusts: ids come from `newMessageId` (checked with `isMessageId` before any path is built).
 * Failure: every function throws the file-system error; `write` removes whatever it
 * half-wrote, so a failed write leaves neither a `.tmp` nor an `.eml` behind.
 * Files found without a database row are moved to `spool/orphaned/`, never deleted.
 * All I/O is async (thread pool), never synchronous on the event loop.
 */
import { constants } from "node:fs";
import { copyFile, mkdir, open, readdir, rename, unlink, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { isMessageId } from "./ids.ts";
import { fsyncPath } from "../fs-sync.ts";
import { readFileBytes } from "../read-file.ts";

export const SPOOL_SUFFIX = ".eml";
export const TMP_SUFFIX = ".tmp";

/** Parts per writev call (below the kernel's IOV_MAX of 1024). */
export const WRITEV_MAX_PARTS = 512;

export interface SpoolWrite {
  id: string;
  /** The message, whole or in parts (written in order, with writev: no joined copy). */
  bytes: Uint8Array | readonly Uint8Array[];
  /**
   * fsync the file before the rename (default true). false only when the caller makes it
   * durable afterwards for a whole group (SpoolFlusher) before anyone relies on it.
   */
  fsync?: boolean;
}

export interface SpoolListing {
  /** Ids of complete spool files. */
  messages: string[];
  /** Names of leftover temporary files (crash during a write). */
  temporary: string[];
  /** Names that are neither (not written by mailgw). */
  foreign: string[];
}

export class Spool {
  readonly dir: string;
  readonly orphanDir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, "spool");
    this.orphanDir = join(this.dir, "orphaned");
  }

  async ensureDirs(): Promise<void> {
    await mkdir(this.orphanDir, { recursive: true });
  }

  pathOf(id: string): string {
    if (!isMessageId(id)) throw new Error(`invalid message id ${JSON.stringify(id)}`);
    return join(this.dir, id + SPOOL_SUFFIX);
  }

  /**
   * Writes one message: `<id>.tmp` (exclusive create) → fsync → rename to `<id>.eml`.
   * The rename is durable only after `syncDir()`, which the caller runs once per batch
   * (or, with `fsync: false`, file and rename only after the group's SpoolFlusher flush).
   * On failure nothing is left under either name.
   */
  async write(w: SpoolWrite): Promise<void> {
    const final = this.pathOf(w.id);
    const tmp = join(this.dir, w.id + TMP_SUFFIX);
    const fh = await open(tmp, "wx", 0o640);
    try {
      if (w.bytes instanceof Uint8Array) await fh.writeFile(w.bytes);
      else await writeParts(fh, w.bytes);
      if (w.fsync !== false) await fh.sync();
    } catch (err) {
      await fh.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    await fh.close();
    try {
      await rename(tmp, final);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
  }

  /** Makes the renames (and removals) done so far durable: one fsync of the spool directory. */
  async syncDir(): Promise<void> {
    await fsyncPath(this.dir);
  }

  /** The stored bytes, in one buffer of the file's size (read-file.ts: once per delivery attempt). */
  read(id: string): Promise<Uint8Array> {
    return readFileBytes(this.pathOf(id));
  }

  /** Removes a spool file; returns false when it was already gone (not an error). */
  async remove(id: string): Promise<boolean> {
    return unlink(this.pathOf(id)).then(
      () => true,
      (err: unknown) => (ignoreMissing(err), false),
    );
  }

  async list(): Promise<SpoolListing> {
    const listing: SpoolListing = { messages: [], temporary: [], foreign: [] };
    for (const entry of await readdir(this.dir, { withFileTypes: true })) {
      if (!entry.isFile()) continue;
      const name = entry.name;
      const id = name.endsWith(SPOOL_SUFFIX) ? name.slice(0, -SPOOL_SUFFIX.length) : null;
      if (id !== null && isMessageId(id)) listing.messages.push(id);
      else if (name.endsWith(TMP_SUFFIX)) listing.temporary.push(name);
      else listing.foreign.push(name);
    }
    listing.messages.sort();
    return listing;
  }

  async removeTemporary(name: string): Promise<void> {
    if (!name.endsWith(TMP_SUFFIX) || name.includes("/")) throw new Error(`not a spool temporary file: ${name}`);
    await unlink(join(this.dir, name)).catch(ignoreMissing);
  }

  /** Moves a file (by its name in the spool dir) to `spool/orphaned/`; returns the new path. */
  async quarantine(name: string): Promise<string> {
    if (name.includes("/") || name === "." || name === "..") throw new Error(`bad spool file name ${name}`);
    return this.quarantineFrom(join(this.dir, name));
  }

  /**
   * Moves the file at `path` (the spool or the archive) to `spool/orphaned/`; returns the new path.
   * An archive on a file system of its own is moved by a copy (fsynced) and an unlink: a rename
   * fails EXDEV there, and recovery's failure kept serve from starting.
   */
  async quarantineFrom(path: string): Promise<string> {
    const name = basename(path);
    let target = join(this.orphanDir, name);
    let n = 0;
    while (await exists(target)) target = join(this.orphanDir, `${name}.${++n}`);
    await rename(path, target).catch(async (err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== "EXDEV") throw err;
      // A copy cut short (the orphan directory's disk full) is removed: each start would add another `.N`.
      await copyFile(path, target, constants.COPYFILE_EXCL).catch(async (copyErr: unknown) => {
        // EEXIST: the file there is not this copy's (exists() could not see it): left alone.
        if ((copyErr as NodeJS.ErrnoException).code !== "EEXIST") await unlink(target).catch(() => undefined);
        throw copyErr;
      });
      await fsyncPath(target);
      await fsyncPath(this.orphanDir); // the copy durable before the original goes
      await unlink(path);
    });
    await fsyncPath(this.orphanDir);
    await fsyncPath(dirname(path));
    return target;
  }
}

/** Writes `parts` in order at the file position. */
async function writeParts(fh: FileHandle, parts: readonly Uint8Array[]): Promise<void> {
  for (let i = 0; i < parts.length; i += WRITEV_MAX_PARTS) await writevAll(fh, parts.slice(i, i + WRITEV_MAX_PARTS));
}

/**
 * One writev of `parts`, continued after a partial write. A file system that fills up mid-write
 * first writes what fits (a partial count, no error); only the next write fails with the reason
 * (ENOSPC, EDQUOT, EFBIG), which is what the admin has to read in the log, not "short write".
 */
export async function writevAll(fh: FileHandle, parts: readonly Uint8Array[]): Promise<void> {
  let left = 0;
  for (const p of parts) left += p.byteLength;
  let rest: readonly Uint8Array[] = parts;
  while (left > 0) {
    const { bytesWritten } = await fh.writev(rest as Uint8Array[]);
    if (bytesWritten <= 0) throw new Error("write to the spool made no progress (0 bytes written)");
    left -= bytesWritten;
    if (left <= 0) return; // the usual case: all of it at once, nothing to copy
    // Partial: skip the parts written whole, cut the one written in part (rare, so a copy is fine).
    let skip = bytesWritten;
    let i = 0;
    while (skip >= (rest[i]?.byteLength ?? Infinity)) skip -= (rest[i++] as Uint8Array).byteLength;
    const first = rest[i] as Uint8Array;
    rest = [first.subarray(skip), ...rest.slice(i + 1)];
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await (await open(path, "r")).close();
    return true;
  } catch {
    return false;
  }
}

export function ignoreMissing(err: unknown): void {
  if ((err as NodeJS.ErrnoException | null)?.code !== "ENOENT") throw err;
}
