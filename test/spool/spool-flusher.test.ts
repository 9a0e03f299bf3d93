/**
 * SpoolFlusher: starts its syncfs worker (Linux), flushes (many concurrent flushes all
 * resolve, sharing syncfs calls), writes and renames the spool files handed to it (a job that
 * fails fails alone), rejects after close, close() releases the directory fd (a tmpfs
 * holding it can be unmounted, when mount is allowed here), and a sync being waited for keeps
 * the process alive (serve's stop waited for one with nothing else left running).
 */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { SpoolJob } from "../../src/spool/incoming-file.ts";
import { SpoolFlusher, syncfsReportsErrors } from "../../src/spool/spool-flusher.ts";
import { withTmpfs } from "../helpers/tmpfs.ts";

/**
 * Runs `body` with a started flusher on a fresh temp dir (skipped, with the reason printed,
 * where syncfs is not available); the dir is removed after, the flusher closed if still open.
 */
async function withFlusher(prefix: string, body: (flusher: SpoolFlusher, dir: string) => Promise<void>): Promise<void> {
  if (process.platform !== "linux") {
    console.log("skipped: syncfs is Linux only");
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), prefix));
  try {
    const started = await SpoolFlusher.start(dir);
    if (!started.flusher) throw new Error(`no flusher: ${started.reason}`);
    try {
      await body(started.flusher, dir);
    } finally {
      await started.flusher.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("flushes resolve, are shared, and fail after close", () =>
  withFlusher("flusher-", async (flusher, dir) => {
  await writeFile(join(dir, "a"), "x");
  const before = flusher.syncs;
  const flushes = Array.from({ length: 30 }, () => flusher.flush());
  // The first two go to the worker at once (it queues the second), the 28 others share one.
  expect(await Promise.all(flushes)).toEqual(Array.from({ length: 30 }, () => []));
  expect(flusher.syncs - before).toBe(3);
  await flusher.close();
  await expect(flusher.flush()).rejects.toThrow("closed");
  }));

test("afterSync() rides on the next flush, or asks for its own when nobody flushes", () =>
  withFlusher("flusher-passive-", async (flusher, dir) => {
  let before = flusher.syncs;
  const riders = [flusher.afterSync(), flusher.afterSync()];
  expect(flusher.syncs).toBe(before); // nothing asked yet
  await Promise.all([flusher.flush(), ...riders]);
  expect(flusher.syncs - before).toBe(1);
  before = flusher.syncs;
  const t0 = performance.now();
  await flusher.afterSync();
  expect(flusher.syncs - before).toBe(1);
  expect(performance.now() - t0).toBeGreaterThanOrEqual(15);
  await flusher.close();
  await expect(flusher.afterSync()).rejects.toThrow("closed");
  }));

test("jobs: bytes written to the tmp name, renamed; a failing job fails alone", () =>
  withFlusher("flusher-jobs-", async (flusher, dir) => {
  await writeFile(join(dir, "spilled.tmp"), "written earlier");
  await writeFile(join(dir, "b.tmp"), "in the way"); // exclusive create fails: that job fails alone
  const bytes = new TextEncoder().encode("Subject: one\r\n\r\nbody\r\n");
  const given = () => new Uint8Array(bytes); // a job's bytes are moved to the worker
  const [first, second] = await Promise.all([
    flusher.flush([
      { tmp: join(dir, "a.tmp"), final: join(dir, "a.eml"), bytes: given() },
      { tmp: join(dir, "b.tmp"), final: join(dir, "b.eml"), bytes: given() },
      { tmp: join(dir, "c.tmp"), final: join(dir, "new-day", "c.eml"), bytes: given() }, // directory created
    ]),
    flusher.flush([{ tmp: join(dir, "spilled.tmp"), final: join(dir, "spilled.eml"), bytes: null }]),
  ]);
  expect(first?.[0]).toBeNull();
  expect(first?.[1]).toContain("EEXIST");
  expect(first?.[2]).toBeNull();
  expect(second).toEqual([null]);
  expect((await readdir(dir)).sort()).toEqual(["a.eml", "new-day", "spilled.eml"]);
  expect(new Uint8Array(await readFile(join(dir, "new-day", "c.eml")))).toEqual(bytes);
  expect(new Uint8Array(await readFile(join(dir, "a.eml")))).toEqual(bytes);
  expect(await readFile(join(dir, "spilled.eml"), "utf8")).toBe("written earlier");
  await flusher.close();
  }));

test("a batch the worker cannot be sent fails alone; jobs sharing one buffer are fine", () =>
  withFlusher("flusher-refused-", async (flusher, dir) => {
  const uncloneable = { tmp: join(dir, "x.tmp"), final: join(dir, "x.eml"), bytes: null, why: () => 0 } as unknown as SpoolJob;
  await expect(flusher.flush([uncloneable])).rejects.toThrow("refused the batch");
  const shared = new TextEncoder().encode("same bytes twice");
  const ok = await flusher.flush([
    { tmp: join(dir, "s1.tmp"), final: join(dir, "s1.eml"), bytes: shared },
    { tmp: join(dir, "s2.tmp"), final: join(dir, "s2.eml"), bytes: shared },
  ]);
  expect(ok).toEqual([null, null]);
  expect(await readFile(join(dir, "s2.eml"), "utf8")).toBe("same bytes twice");
  await flusher.close();
  }));

test("a worker that dies tells onDeath; what it had and every later flush fail", () =>
  withFlusher("flusher-death-", async (flusher) => {
    const died = new Promise<string>((resolve) => flusher.onDeath(resolve));
    // A request the worker cannot handle throws inside it: the thread dies.
    (flusher as unknown as { worker: Worker }).worker.postMessage({ kind: "sync", seq: -5, jobs: null });
    const caught = flusher.flush().then(() => "resolved", (err: Error) => err.message);
    expect(await died).toContain("syncfs worker failed");
    expect(await caught).toContain("syncfs worker failed");
    await expect(flusher.flush()).rejects.toThrow("closed");
  }));

test("a process waiting for a sync is kept alive until it is answered", async () => {
  if (process.platform !== "linux") return console.log("skipped: syncfs is Linux only");
  const dir = await mkdtemp(join(tmpdir(), "flusher-alive-"));
  try {
    // serve's stop: the sockets and the delivery thread are gone, and the finisher waits for the
    // sync of its done marks. The worker is unref'd; with nothing else running, the process
    // ended there (exit 0) without finishing its stop: no "stopped" line, the database left open.
    const script = join(dir, "wait-for-sync.ts");
    const module = fileURLToPath(new URL("../../src/spool/spool-flusher.ts", import.meta.url));
    await writeFile(script, `import { SpoolFlusher } from ${JSON.stringify(module)};
const started = await SpoolFlusher.start(${JSON.stringify(dir)});
if (!started.flusher) throw new Error(started.reason);
const flusher = started.flusher;
void (async () => {
  for (let i = 0; i < 3; i++) await flusher.afterSync();
  await flusher.flush();
  console.log("synced");
  await flusher.close();
})();
`);
    const run = spawnSync(process.execPath, [script], { encoding: "utf8", timeout: 10_000 });
    expect({ status: run.status, stdout: run.stdout, stderr: run.stderr }).toEqual({ status: 0, stdout: "synced\n", stderr: "" });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("close() releases the directory: its tmpfs can be unmounted", () =>
  withTmpfs("flusher-tmpfs-", 1, async (mnt) => {
    const started = await SpoolFlusher.start(mnt);
    if (!started.flusher) throw new Error(`no flusher: ${started.reason}`);
    await started.flusher.flush();
    await started.flusher.close();
    expect(spawnSync("umount", [mnt]).status).toBe(0);
  }));

test("a kernel whose syncfs does not report write-back errors (before 5.8) gets no flusher: per-file fsync", async () => {
  expect(["4.18.0-553.el8", "4.19.0-27-amd64", "5.4.0-150-generic", "5.7.19"].map(syncfsReportsErrors)).toEqual([false, false, false, false]);
  expect(["5.8.0", "5.15.0-105-generic", "6.1.0-18-amd64", "6.18.44-fc-v595", "10.0"].map(syncfsReportsErrors)).toEqual([true, true, true, true, true]);
  const dir = await mkdtemp(join(tmpdir(), "flusher-old-kernel-"));
  try {
    const started = await SpoolFlusher.start(dir, undefined, "5.4.0-150-generic");
    expect(started.flusher).toBeNull();
    expect(started.flusher === null ? started.reason : "").toBe("Linux 5.4.0-150-generic is older than 5.8: its syncfs does not report write-back errors");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
