/**
 * A small tmpfs for tests that need a file system that fills up or can be unmounted. Mounting
 * needs root: elsewhere the test prints why it is skipped (never passes silently) and `body`
 * does not run. The mount is undone and the directory removed afterwards, whatever happens
 * (unmount, also for the other tests that mount something).
 */
import { spawnSync } from "node:child_process";
import { statfsSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export async function withTmpfs(prefix: string, sizeMb: number, body: (mnt: string) => Promise<void>, options = ""): Promise<void> {
  const mnt = await mkdtemp(join(tmpdir(), prefix));
  const mount = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${sizeMb}m${options ? `,${options}` : ""}`, "tmpfs", mnt]);
  if (mount.status !== 0) {
    console.log(`skipped: cannot mount a tmpfs here (${String(mount.stderr).trim() || "mount failed"}); run as root`);
    await rm(mnt, { recursive: true, force: true });
    return;
  }
  try {
    await body(mnt);
  } finally {
    unmount(mnt);
    await rm(mnt, { recursive: true, force: true });
  }
}

/**
 * Unmounts `mnt`, waiting up to ~2 s for a process that still has a file open there (a serve
 * that is exiting, a closing database) and then detaching it lazily: a plain umount that failed
 * "target is busy" left the mount, and with it the test run's temp directory, behind for good.
 */
export function unmount(mnt: string): void {
  for (let i = 0; i < 20; i++) {
    if (spawnSync("umount", [mnt]).status === 0) return;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
  }
  spawnSync("umount", ["-l", mnt]);
}

/** Fills the file system of `mnt` until about `leftBytes` are free; returns the filler file's path (remove it to free the space). */
export function fillUntil(mnt: string, leftBytes: number): string {
  const s = statfsSync(mnt);
  const filler = join(mnt, "filler");
  writeFileSync(filler, Buffer.alloc(Math.max(0, s.bavail * s.bsize - leftBytes)));
  return filler;
}
