/**
 * Replaces a file atomically: write a temporary file in the same directory, fsync it,
 * rename it over the target, fsync the directory. A reader (the hot-reload watcher of a
 * running gateway) sees either the old bytes or the new ones, never a half-written file.
 * Symlinks are followed so the link stays a link. Keeps the old file's mode. On failure
 * the temporary file is removed and the error is thrown; the target is untouched.
 */
import { randomBytes } from "node:crypto";
import { open, realpath, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { fsyncPath } from "../fs-sync.ts";

const DEFAULT_FILE_MODE = 0o644;

async function targetPath(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch {
    return path;
  }
}

async function fileMode(path: string): Promise<number> {
  try {
    return (await stat(path)).mode & 0o7777;
  } catch {
    return DEFAULT_FILE_MODE;
  }
}

export async function writeFileAtomic(path: string, content: string): Promise<void> {
  const target = await targetPath(path);
  const dir = dirname(target);
  const tmp = join(dir, `.${basename(target)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  const mode = await fileMode(target);
  const handle = await open(tmp, "wx", mode);
  try {
    try {
      await handle.writeFile(content, "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, target);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fsyncPath(dir);
}
