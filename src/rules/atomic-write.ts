/**
 * Replaces a file atomically: write a temporary file in the same directory, fsync it,
 * rename it over the target, fsync the directory. A reader (the hot-reload watcher of a
 * running gateway) sees either the old bytes or the new ones, never a half-written file.
 * Symlinks are followed so the link stays a link. Keeps the old file's mode, owner and group:
 * a rules file installed 0640 root:mailgw that `sudo mailgw rules add` left root:root could no
 * longer be read by the service (the reload keeps the old rules, the next start fails). When
 * the owner and group cannot be kept (not root, not a member of the group), nothing is written.
 * On failure the temporary file is removed and the error is thrown; the target is untouched.
 */
import { randomBytes } from "node:crypto";
import { open, realpath, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { CliError, describeError } from "../errors.ts";
import { fsyncPath } from "../fs-sync.ts";

const DEFAULT_FILE_MODE = 0o644;

async function targetPath(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch {
    return path;
  }
}

interface Ownership {
  mode: number;
  uid: number;
  gid: number;
}

async function ownershipOf(path: string): Promise<Ownership | null> {
  try {
    const st = await stat(path);
    return { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
  } catch {
    return null;
  }
}

export async function writeFileAtomic(path: string, content: string): Promise<void> {
  const target = await targetPath(path);
  const dir = dirname(target);
  const tmp = join(dir, `.${basename(target)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  const before = await ownershipOf(target);
  const handle = await open(tmp, "wx", before?.mode ?? DEFAULT_FILE_MODE).catch((err: unknown) => {
    // Bare, the errno named only the temporary file, as if it were the problem.
    throw new CliError(`cannot write ${target}: the new version is written beside it in ${dir} and renamed over it, so that directory must be writable (${describeError(err)}); file unchanged`);
  });
  try {
    try {
      if (before !== null) await keepOwnership(handle, target, before);
      await handle.writeFile(content, "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, target).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== "EBUSY") throw err;
      // A file bind-mounted on its own (docker -v ./rules.yaml:/app/rules.yaml) is a mount point: no rename can replace it.
      throw new CliError(`cannot replace ${target}: it is a mount point of its own (a file bind-mounted alone, as docker -v FILE:FILE); mount its directory instead; file unchanged`);
    });
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fsyncPath(dir);
}

/** The new file gets the old one's mode (open's mode is cut by the umask), owner and group. */
async function keepOwnership(handle: Awaited<ReturnType<typeof open>>, target: string, before: Ownership): Promise<void> {
  await handle.chmod(before.mode);
  const now = await handle.stat();
  if (now.uid === before.uid && now.gid === before.gid) return;
  try {
    await handle.chown(before.uid, before.gid);
  } catch (err) {
    throw new CliError(`cannot keep the owner and group of ${target} (${before.uid}:${before.gid}): ${describeError(err)}; run as root, or as its owner while a member of its group; file unchanged`);
  }
}
