/**
 * WalSync: a commit is visible to another connection when it resolves, the connection is
 * back on synchronous=FULL afterwards (also after a failed transaction), the commit itself
 * does no fsync on the calling thread (strace, when installed), concurrent commits share
 * fsyncs, and a failed fsync rejects the commit. commitWithShortWaits (worker threads) waits for
 * a lock another process holds, then commits; gives up after busy_timeout; never retries a failing fn.
 */
import { Database } from "bun:sqlite";
import { afterEach, beforeEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { commitWhenFree, commitWithShortWaits, tryCommitWithoutWaiting, WalSync } from "../../src/spool/wal-sync.ts";

let dir = "";
let db: Database;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "wal-sync-"));
  db = new Database(join(dir, "db.sqlite"), { create: true, readwrite: true, strict: true });
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = FULL");
  db.exec("CREATE TABLE t (n INTEGER)");
});

afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

function synchronousSetting(): number | undefined {
  return db.query<{ synchronous: number }, []>("PRAGMA synchronous").get()?.synchronous;
}

test("a resolved commit is visible to another connection; synchronous stays FULL", async () => {
  const wal = new WalSync(db);
  await wal.commitWhenFree(() => {
    db.query("INSERT INTO t VALUES (?)").run(1);
  });
  expect(synchronousSetting()).toBe(2);
  const other = new Database(join(dir, "db.sqlite"), { readonly: true });
  expect(other.query<{ c: number }, []>("SELECT count(*) AS c FROM t").get()?.c).toBe(1);
  other.close();
});

test("a failing transaction rejects, is rolled back, and leaves synchronous FULL", async () => {
  const wal = new WalSync(db);
  await expect(
    wal.commitWhenFree(() => {
      db.query("INSERT INTO t VALUES (?)").run(1);
      throw new Error("boom");
    }),
  ).rejects.toThrow("boom");
  expect(synchronousSetting()).toBe(2);
  expect(db.query<{ c: number }, []>("SELECT count(*) AS c FROM t").get()?.c).toBe(0);
});

test("many commits in one turn all resolve, sharing fsyncs", async () => {
  const wal = new WalSync(db);
  const commits = Array.from({ length: 50 }, (_, i) =>
    wal.commitWhenFree(() => {
      db.query("INSERT INTO t VALUES (?)").run(i);
    }),
  );
  await Promise.all(commits);
  expect(db.query<{ c: number }, []>("SELECT count(*) AS c FROM t").get()?.c).toBe(50);
});

test("an fsync that fails rejects the commit", async () => {
  const wal = new WalSync(db);
  await wal.commitWhenFree(() => undefined);
  const walPath = join(dir, "db.sqlite-wal");
  expect(existsSync(walPath)).toBe(true);
  // A second connection closing would not remove it; renaming the directory away makes the
  // next open of the WAL path fail, as a vanished disk would.
  const moved = `${dir}-moved`;
  const { renameSync } = await import("node:fs");
  renameSync(dir, moved);
  try {
    await expect(wal.commitWhenFree(() => db.query("INSERT INTO t VALUES (1)").run())).rejects.toThrow();
  } finally {
    renameSync(moved, dir);
  }
});

test("the commit itself makes no fsync on the calling thread (strace)", async () => {
  const strace = Bun.which("strace");
  if (!strace) {
    console.log("skipped: strace not installed");
    return;
  }
  const dbPath = join(dir, "child.sqlite");
  const setup = new Database(dbPath, { create: true, readwrite: true, strict: true });
  setup.exec("PRAGMA journal_mode = WAL");
  setup.exec("CREATE TABLE t (n INTEGER)");
  setup.close();
  const script = join(dir, "commit.ts");
  await Bun.write(
    script,
    `import { Database } from "bun:sqlite";
import { WalSync } from ${JSON.stringify(join(import.meta.dir, "../../src/spool/wal-sync.ts"))};
const db = new Database(${JSON.stringify(dbPath)}, { readwrite: true, strict: true });
db.exec("PRAGMA synchronous = FULL");
const wal = new WalSync(db);
const main = process.pid;
for (let i = 0; i < 20; i++) await wal.commitWhenFree(() => { db.query("INSERT INTO t VALUES (?)").run(i); });
console.log("main", main);
`,
  );
  const proc = Bun.spawnSync([strace, "-f", "-e", "trace=fsync,fdatasync", "-o", join(dir, "trace"), process.execPath, script]);
  if (proc.exitCode !== 0) {
    console.log(`skipped: strace could not run (${proc.stderr.toString().trim().slice(0, 200)})`);
    return;
  }
  const mainPid = /main (\d+)/.exec(proc.stdout.toString())?.[1];
  expect(mainPid).toBeDefined();
  const lines = (await Bun.file(join(dir, "trace")).text()).split("\n").filter((l) => /fsync|fdatasync/.test(l) && !l.includes("resumed"));
  const onMain = lines.filter((l) => l.startsWith(`${mainPid} `));
  const elsewhere = lines.filter((l) => !l.startsWith(`${mainPid} `));
  // SQLite itself fsyncs on the main thread a few times, whatever the commits: creating the
  // WAL (header + directory) and checkpointing at exit. A FULL commit would add one per
  // commit (20+); the commits' own fsyncs all run in the thread pool.
  expect(elsewhere.length).toBeGreaterThanOrEqual(20);
  expect(onMain.length).toBeLessThanOrEqual(6);
}, 30_000);

test("tryCommitWithoutWaiting: gives up at once on a held write lock, commits when free, keeps the busy timeout", () => {
  db.exec("PRAGMA busy_timeout = 5000");
  const other = new Database(join(dir, "db.sqlite"));
  other.exec("BEGIN IMMEDIATE");
  const t0 = performance.now();
  expect(tryCommitWithoutWaiting(db, () => db.exec("INSERT INTO t VALUES (1)"))).toBe(false);
  expect(performance.now() - t0).toBeLessThan(500); // not the 5 s busy timeout
  other.exec("COMMIT");
  expect(tryCommitWithoutWaiting(db, () => db.exec("INSERT INTO t VALUES (2)"))).toBe(true);
  expect(other.query<{ n: number }, []>("SELECT group_concat(n) AS n FROM t").get()?.n).toBe("2" as unknown as number);
  expect(db.query<{ timeout: number }, []>("PRAGMA busy_timeout").get()?.timeout).toBe(5000);
  expect(synchronousSetting()).toBe(2);
  expect(() => tryCommitWithoutWaiting(db, () => db.exec("INSERT INTO nowhere VALUES (1)"))).toThrow("no such table");
  other.close();
});

test("commitWhenFree: waits for a held write lock on timers (the event loop keeps running), then commits", async () => {
  db.exec("PRAGMA busy_timeout = 5000");
  const other = new Database(join(dir, "db.sqlite"));
  other.exec("BEGIN IMMEDIATE");
  let ticks = 0;
  let longestGap = 0;
  let last = performance.now();
  const ticker = setInterval(() => {
    const t = performance.now();
    longestGap = Math.max(longestGap, t - last);
    last = t;
    ticks++;
  }, 5);
  setTimeout(() => other.exec("COMMIT"), 300);
  const t0 = performance.now();
  await commitWhenFree(db, () => db.exec("INSERT INTO t VALUES (7)"));
  const waited = performance.now() - t0;
  clearInterval(ticker);
  expect(waited).toBeGreaterThanOrEqual(250);
  expect(ticks).toBeGreaterThan(10); // SQLite's busy handler would have slept through them all
  expect(longestGap).toBeLessThan(200);
  expect(other.query<{ n: number }, []>("SELECT n FROM t").get()?.n).toBe(7);
  expect(db.query<{ timeout: number }, []>("PRAGMA busy_timeout").get()?.timeout).toBe(5000);
  other.close();
});

test("commitWhenFree: gives up after the connection's busy_timeout with SQLITE_BUSY; a failing fn rejects at once", async () => {
  db.exec("PRAGMA busy_timeout = 300");
  const other = new Database(join(dir, "db.sqlite"));
  other.exec("BEGIN IMMEDIATE");
  const t0 = performance.now();
  const err = await commitWhenFree(db, () => db.exec("INSERT INTO t VALUES (1)")).catch((e: unknown) => e);
  expect((err as { code?: string }).code).toBe("SQLITE_BUSY");
  expect(performance.now() - t0).toBeGreaterThanOrEqual(280);
  expect(performance.now() - t0).toBeLessThan(2000);
  other.exec("ROLLBACK");
  await expect(commitWhenFree(db, () => db.exec("INSERT INTO nowhere VALUES (1)"))).rejects.toThrow("no such table");
  expect(db.query<{ c: number }, []>("SELECT count(*) AS c FROM t").get()?.c).toBe(0);
  other.close();
});

/** Another process takes the write lock, says so, and commits after `holdMs`. */
async function lockElsewhere(path: string, holdMs: number): Promise<Bun.Subprocess<"ignore", "pipe", "inherit">> {
  const script = `
    const { Database } = require("bun:sqlite");
    const db = new Database(${JSON.stringify(path)});
    db.exec("BEGIN IMMEDIATE");
    console.log("locked");
    setTimeout(() => { db.exec("COMMIT"); db.close(); }, ${holdMs});`;
  const child = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "inherit" });
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  expect(new TextDecoder().decode(value)).toContain("locked");
  return child;
}

test("commitWithShortWaits: waits (blocking) for a write lock another process holds, then commits; the busy timeout stays", async () => {
  db.exec("PRAGMA busy_timeout = 5000");
  const child = await lockElsewhere(join(dir, "db.sqlite"), 150);
  const t0 = performance.now();
  const out = commitWithShortWaits(db, () => {
    db.exec("INSERT INTO t VALUES (3)");
    return "done";
  });
  expect(out).toBe("done");
  expect(performance.now() - t0).toBeGreaterThanOrEqual(100); // it did wait for the other process
  expect(await child.exited).toBe(0);
  expect(db.query<{ n: number }, []>("SELECT n FROM t").get()?.n).toBe(3);
  expect(db.query<{ timeout: number }, []>("PRAGMA busy_timeout").get()?.timeout).toBe(5000);
  expect(synchronousSetting()).toBe(2); // the connection's own level: not switched here
});

test("commitWithShortWaits: gives up after busy_timeout with SQLITE_BUSY; a failing fn throws at once, rolled back", async () => {
  db.exec("PRAGMA busy_timeout = 200");
  const child = await lockElsewhere(join(dir, "db.sqlite"), 1500);
  let calls = 0;
  let err: unknown = null;
  const t0 = performance.now();
  try {
    commitWithShortWaits(db, () => void calls++);
  } catch (e) {
    err = e;
  }
  expect((err as { code?: string } | null)?.code).toBe("SQLITE_BUSY");
  expect(performance.now() - t0).toBeGreaterThanOrEqual(190);
  expect(calls).toBe(0); // BEGIN IMMEDIATE never got the lock
  expect(await child.exited).toBe(0);
  expect(() =>
    commitWithShortWaits(db, () => {
      calls++;
      db.exec("INSERT INTO t VALUES (1)");
      db.exec("INSERT INTO nowhere VALUES (1)");
    }),
  ).toThrow("no such table");
  expect(calls).toBe(1);
  expect(db.query<{ c: number }, []>("SELECT count(*) AS c FROM t").get()?.c).toBe(0);
  expect(db.query<{ timeout: number }, []>("PRAGMA busy_timeout").get()?.timeout).toBe(200);
});
