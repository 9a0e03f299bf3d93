/**
 * The DATA_DIR lock of `mailgw serve` (src/serve/data-dir-lock.ts) on its own: one holder per
 * data dir, in this process (a new fd conflicts too, so a restart needs release()) and across
 * processes; the refusal names DATA_DIR and the holder's pid; a holder killed with SIGKILL
 * leaves no stale lock; different data dirs do not interfere. Without flock (no libc, a file
 * system answering ENOLCK) serve still starts, unprotected, with a warning. The real serve is
 * in test/e2e/serve-data-dir-lock.test.ts.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CliError } from "../../src/errors.ts";
import { constants as osConstants } from "node:os";
import { silentLogger, type LogFields } from "../../src/log/logger.ts";
import { DATA_DIR_LOCK_FILE, DATABASE_LOCK_SUFFIX, lockDatabase, lockDataDir, serveRunning } from "../../src/serve/data-dir-lock.ts";
import { spawnSync } from "node:child_process";
import { withTmpfs } from "../helpers/tmpfs.ts";

const MODULE = join(import.meta.dir, "../../src/serve/data-dir-lock.ts");
const FLOCK_PLATFORM = process.platform === "linux" || process.platform === "darwin";

const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
}, 60_000);

function dataDir(): string {
  const root = mkdtempSync(join(tmpdir(), "mailgw-lock-"));
  roots.push(root);
  return join(root, "data");
}

function refusal(dir: string, pid: number): string {
  return `DATA_DIR ${dir} is in use by another mailgw serve (pid ${pid}); stop it first or use another DATA_DIR`;
}

function refusedWith(fn: () => unknown): CliError {
  try {
    fn();
  } catch (err) {
    if (err instanceof CliError) return err;
    throw err;
  }
  throw new Error("the lock was granted twice");
}

describe.skipIf(!FLOCK_PLATFORM)("DATA_DIR lock", () => {
  test("creates DATA_DIR and the lock file with the holder's pid; a second acquisition in this process is refused", () => {
    const dir = dataDir();
    const lock = lockDataDir(dir, silentLogger);
    try {
      expect(lock.held).toBe(true);
      expect(lock.path).toBe(join(dir, DATA_DIR_LOCK_FILE));
      expect(readFileSync(lock.path, "utf8")).toBe(`${process.pid}\n`);
      const err = refusedWith(() => lockDataDir(dir, silentLogger));
      expect(err.message).toBe(refusal(dir, process.pid));
      expect(err.exitCode).toBe(1);
      // The refused one changed nothing: the holder's pid is still there.
      expect(readFileSync(lock.path, "utf8")).toBe(`${process.pid}\n`);
    } finally {
      lock.release();
    }
  });

  test("release lets the next one in (a restart in the same process) and leaves an empty file", () => {
    const dir = dataDir();
    const first = lockDataDir(dir, silentLogger);
    first.release();
    first.release(); // idempotent: a second stop must not close someone else's fd
    expect(readFileSync(first.path, "utf8")).toBe("");
    const second = lockDataDir(dir, silentLogger);
    expect(second.held).toBe(true);
    second.release();
    expect(existsSync(second.path)).toBe(true);
  });

  test("the database lock: a second acquisition is refused naming DATABASE_URL; other databases in the same directory are not", () => {
    const dir = dataDir();
    const db = join(dir, "mail-gateway.db");
    const lock = lockDatabase(db, silentLogger);
    const other = lockDatabase(join(dir, "other.db"), silentLogger);
    try {
      expect(lock.path).toBe(`${db}${DATABASE_LOCK_SUFFIX}`);
      expect(other.held).toBe(true);
      expect(refusedWith(() => lockDatabase(db, silentLogger)).message).toBe(
        `database ${db} (DATABASE_URL) is in use by another mailgw serve (pid ${process.pid}) with another DATA_DIR; stop it first or use another DATABASE_URL`,
      );
    } finally {
      lock.release();
      other.release();
    }
  });

  test("different data dirs are locked independently", () => {
    const a = lockDataDir(dataDir(), silentLogger);
    const b = lockDataDir(dataDir(), silentLogger);
    expect([a.held, b.held]).toEqual([true, true]);
    a.release();
    b.release();
  });

  test("held by another process: refused with its pid; after that process is killed with SIGKILL, granted", async () => {
    const dir = dataDir();
    const holder = Bun.spawn(
      [process.execPath, "-e", `const m = await import(${JSON.stringify(MODULE)}); m.lockDataDir(process.argv[1], { warn() {} }); console.log("locked"); setInterval(() => {}, 1000);`, dir],
      { stdout: "pipe", stderr: "inherit" },
    );
    try {
      const reader = holder.stdout.getReader();
      const { value } = await reader.read();
      expect(new TextDecoder().decode(value)).toBe("locked\n");
      expect(refusedWith(() => lockDataDir(dir, silentLogger)).message).toBe(refusal(dir, holder.pid));
    } finally {
      holder.kill("SIGKILL");
    }
    await holder.exited;
    const lock = lockDataDir(dir, silentLogger);
    expect(lock.held).toBe(true);
    expect(readFileSync(lock.path, "utf8")).toBe(`${process.pid}\n`);
    lock.release();
  });
});

describe("DATA_DIR lock unavailable", () => {
  const warnings = (): { lines: { msg: string; fields?: LogFields }[]; warn(msg: string, fields?: LogFields): void } => {
    const lines: { msg: string; fields?: LogFields }[] = [];
    return { lines, warn: (msg, fields) => void lines.push({ msg, fields }) };
  };

  test("no flock on this platform: runs unlocked with a warning naming DATA_DIR and the reason", () => {
    const dir = dataDir();
    const log = warnings();
    const lock = lockDataDir(dir, log, { unavailable: "no flock on plan9" });
    expect(lock.held).toBe(false);
    expect(log.lines).toEqual([
      {
        msg: "DATA_DIR cannot be locked: nothing stops a second mailgw serve from using it, so run only one",
        fields: { data_dir: dir, lock_file: join(dir, DATA_DIR_LOCK_FILE), reason: "no flock on plan9" },
      },
    ]);
    lock.release();
  });

  test("a file system that cannot lock (ENOLCK): runs unlocked with a warning, not refused", () => {
    const dir = dataDir();
    const log = warnings();
    const lock = lockDataDir(dir, log, { flock: () => -1, errno: () => osConstants.errno.ENOLCK });
    expect(lock.held).toBe(false);
    expect(log.lines.map((l) => l.fields?.reason)).toEqual([`flock on ${join(dir, DATA_DIR_LOCK_FILE)} failed (errno ${osConstants.errno.ENOLCK})`]);
  });
});

test("a DATA_DIR on a read-only file system (systemd's ProtectSystem outside ReadWritePaths): the error says to re-run install", async () => {
  await withTmpfs("mailgw-lock-ro-", 1, async (mnt) => {
    const dir = join(mnt, "data");
    mkdirSync(dir);
    const remount = spawnSync("mount", ["-o", "remount,ro", mnt]);
    expect(remount.status).toBe(0);
    const err = refusedWith(() => lockDataDir(dir, silentLogger));
    expect(err.message).toStartWith(`cannot open the lock file ${join(dir, DATA_DIR_LOCK_FILE)}: `);
    expect(err.message).toContain("EROFS");
    expect(err.message).toEndWith("(a read-only file system: under systemd, run `mailgw systemd install` again after moving DATA_DIR, so the unit lets serve write there)");
  });
});

test("a DATA_DIR that does not exist, on a read-only file system: the error says to create it (re-running install cannot help)", async () => {
  // systemd skips a missing "-" ReadWritePaths entry: the service can never create the directory itself.
  await withTmpfs("mailgw-lock-ro-missing-", 1, async (mnt) => {
    const remount = spawnSync("mount", ["-o", "remount,ro", mnt]);
    expect(remount.status).toBe(0);
    const dir = join(mnt, "data");
    const err = refusedWith(() => lockDataDir(dir, silentLogger));
    expect(err.message).toStartWith(`cannot open the lock file ${join(dir, DATA_DIR_LOCK_FILE)}: `);
    expect(err.message).toContain("EROFS");
    expect(err.message).toEndWith(
      `(a read-only file system where ${dir} would be created: create it for the user serve runs as ` +
        `(under systemd the service writes only into existing directories: sudo install -d -m 0750 -o mailgw -g mailgw ${dir}, ` +
        "then run `mailgw systemd install` again if DATA_DIR changed since it last ran))",
    );
  });
});

describe("serveRunning (mailgw queue's notes)", () => {
  const lockFile = (pidText: string): string => {
    const dir = dataDir();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, DATA_DIR_LOCK_FILE), pidText);
    return dir;
  };

  test("no lock file: cannot tell; emptied by a clean stop: stopped; a live pid: running; a gone pid: stopped", () => {
    expect(serveRunning(dataDir())).toBeNull();
    expect(serveRunning(lockFile(""))).toBe(false);
    expect(serveRunning(lockFile(`${process.pid}\n`))).toBe(true);
    const gone = spawnSync("true").pid;
    expect(serveRunning(lockFile(`${gone}\n`))).toBe(false);
  });

  test.skipIf(process.platform !== "linux")("a serve killed -9 that its parent has not reaped yet (a zombie) is not running", async () => {
    // python3 forks a child that exits at once and is never waited for: a zombie while the parent sleeps.
    const parent = Bun.spawn(["python3", "-c", "import os,time\npid=os.fork()\nif pid==0: os._exit(0)\ntime.sleep(0.3)\nprint(pid,flush=True)\ntime.sleep(30)"], { stdout: "pipe" });
    try {
      const reader = parent.stdout.getReader();
      const pid = Number(new TextDecoder().decode((await reader.read()).value).trim());
      expect(readFileSync(`/proc/${pid}/stat`, "latin1")).toMatch(/^\d+ \(.*\) Z /);
      expect(serveRunning(lockFile(`${pid}\n`))).toBe(false);
    } finally {
      parent.kill();
    }
  }, 60_000);
});
