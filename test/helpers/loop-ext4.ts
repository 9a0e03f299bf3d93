/**
 * A small ext4 on a loop device, for tests that freeze a file system (fsfreeze) under serve or
 * the pipeline. Needs root: elsewhere `loopExt4` prints why and returns null, and the test skips.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unmount } from "./tmpfs.ts";

/** Runs a command; its status and its output (stdout, stderr, spawn error) in one string. */
export function run(cmd: string, ...args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  return { ok: r.status === 0, out: `${r.stdout ?? ""}${r.stderr ?? ""}${r.error ? String(r.error) : ""}`.trim() };
}

/**
 * A 64 MB ext4 mounted from a loop image under a new temp directory (prefix `prefix`); the
 * unmount and the removal go into `cleanups` (run in reverse). null, with the reason printed,
 * where that cannot be done.
 */
export function loopExt4(prefix: string, cleanups: (() => Promise<unknown> | void)[]): string | null {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const image = join(dir, "fs.img");
  const mnt = join(dir, "mnt");
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const steps: [string, ...string[]][] = [["truncate", "-s", "64M", image], ["mkfs.ext4", "-q", "-F", image], ["mkdir", mnt], ["mount", "-o", "loop", image, mnt]];
  for (const [cmd, ...args] of steps) {
    const r = run(cmd, ...args);
    if (!r.ok) {
      console.log(`skipped: cannot mount a loop ext4 here (${cmd}: ${r.out || "failed"}); run as root`);
      return null;
    }
  }
  cleanups.push(() => unmount(mnt));
  return mnt;
}
