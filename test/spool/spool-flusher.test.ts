/**
 * SpoolFlusher: starts its syncfs worker (Linux), flushes (many concurrent flushes all
 * resolve, sharing syncfs calls), rejects after close, and close() releases the directory
 * fd (a tmpfs holding it can be unmounted, when mount is allowed here).
 */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SpoolFlusher } from "../../src/spool/spool-flusher.ts";

test("flushes resolve, are shared, and fail after close", async () => {
  if (process.platform !== "linux") {
    console.log("skipped: syncfs is Linux only");
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), "flusher-"));
  try {
    const started = await SpoolFlusher.start(dir);
    if (!started.flusher) throw new Error(`no flusher: ${started.reason}`);
    const flusher = started.flusher;
    await writeFile(join(dir, "a"), "x");
    const flushes = Array.from({ length: 30 }, () => flusher.flush());
    // All but the first share one next syncfs.
    expect(new Set(flushes.slice(1)).size).toBe(1);
    await Promise.all(flushes);
    await flusher.close();
    await expect(flusher.flush()).rejects.toThrow("closed");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("close() releases the directory: its tmpfs can be unmounted", async () => {
  const mnt = await mkdtemp(join(tmpdir(), "flusher-tmpfs-"));
  const mount = spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt]);
  if (mount.status !== 0) {
    console.log(`skipped: cannot mount a tmpfs here (${String(mount.stderr).trim() || "mount failed"})`);
    await rm(mnt, { recursive: true, force: true });
    return;
  }
  try {
    const started = await SpoolFlusher.start(mnt);
    if (!started.flusher) throw new Error(`no flusher: ${started.reason}`);
    await started.flusher.flush();
    await started.flusher.close();
    expect(spawnSync("umount", [mnt]).status).toBe(0);
  } finally {
    spawnSync("umount", [mnt]);
    await rm(mnt, { recursive: true, force: true });
  }
});
