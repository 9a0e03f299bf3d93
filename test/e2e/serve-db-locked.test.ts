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
import { greet, RawClient, sendMail, simpleMessage, terminated } from "../smtp/helpers.ts";
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

test("database write-locked for a while under a running serve: 451 and /healthz 503 meanwhile, 200 again once the lock is gone, with no message needed", async () => {
  const dir = serveDir();
  const serve = await startServe("source", dir);
  const holder = openDatabase(join(dir, "data", "mail-gateway.db"));
  const health = async (): Promise<{ code: number; reason?: string }> => {
    const res = await fetch(new URL("/healthz", serve.httpUrl));
    return { code: res.status, reason: ((await res.json()) as { reason?: string }).reason };
  };
  try {
    const c = await RawClient.connect(serve.smtpPort);
    await greet(c);
    expect(await sendMail(c, "b@company.com", simpleMessage("before"))).toMatch(/^250 /);
    holder.exec("BEGIN IMMEDIATE");
    for (const line of ["MAIL FROM:<a@sender.example>", "RCPT TO:<b@company.com>", "DATA"]) expect(await c.cmd(line)).toMatch(/^(250|354) /);
    c.write(terminated(simpleMessage("while locked")));
    expect(await c.reply(20_000)).toMatch(/^451 4\.3\.0 /); // after busy_timeout (5 s)
    expect(await health()).toEqual({ code: 503, reason: "database: the last commit of a received message failed; every message gets 451" });
    holder.exec("COMMIT");
    // Before: 503 until the next message was stored, which a balancer that drops unhealthy
    // backends never sends.
    expect(await health()).toEqual({ code: 200, reason: undefined });
    await serve.waitForLog((l) => l.msg === "health ok");
    expect(await sendMail(c, "b@company.com", simpleMessage("after"))).toMatch(/^250 /);
    c.end();
  } finally {
    holder.close();
    expect(await serve.stop("SIGTERM")).toBe(0);
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
