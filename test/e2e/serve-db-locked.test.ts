/**
 * A serve (re)started while another process holds the database's write lock (a `sqlite3`
 * shell left inside BEGIN IMMEDIATE, a VACUUM run without stopping the service): recovery's
 * first write waits busy_timeout and gives up. The admin gets one line naming the database
 * and the fix (SPEC §1), not SQLite's bare "database is locked", and exit 1; once the lock is
 * gone, serve starts.
 */
import { expect, test } from "bun:test";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { openDatabase } from "../../src/store/db.ts";
import { runServeOnce, serveDir, startServe } from "../smtp/serve-process.ts";

test("database write-locked by another process at start: exit 1, one line naming the database and what to do", async () => {
  const dir = serveDir();
  const dataDir = join(dir, "data");
  const dbPath = join(dataDir, "mail-gateway.db");
  mkdirSync(join(dataDir, "spool"), { recursive: true });
  const holder = openDatabase(dbPath);
  const env = { DATA_DIR: dataDir, SMTP_HOST: "127.0.0.1", HTTP_HOST: "127.0.0.1" };
  try {
    holder.exec("BEGIN IMMEDIATE");
    const r = await runServeOnce("source", dir, env, [], 30_000);
    expect(r.exitCode).toBe(1);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(dbPath);
    expect(lines[0]).toContain("locked for writing by another process");
    holder.exec("COMMIT");
    const s = await startServe("source", dir, env);
    expect(await s.stop("SIGTERM")).toBe(0);
  } finally {
    holder.close();
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
