/**
 * Full disk at the SMTP level (issue 3): the real `mailgw serve` with DATA_DIR on a 1 MB
 * tmpfs. Messages that do not fit get 451 4.3.0 (never 250), the session and the server go
 * on, and every message that did get 250 is archived intact. A restart after a crash on the
 * full disk cannot recover: it says so in one line naming the files and the fix. Needs root
 * (mount); skips with a printed reason otherwise.
 */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { newMessageId } from "../../src/spool/ids.ts";
import { openDatabase } from "../../src/store/db.ts";
import { insertMessage } from "../../src/store/messages.ts";
import { RawClient, greet, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { withTmpfs } from "../helpers/tmpfs.ts";
import { runServeOnce, serveDir, startServe } from "../smtp/serve-process.ts";

function archived(dataDir: string): Map<string, string> {
  const out = new Map<string, string>();
  const root = join(dataDir, "archive");
  for (const day of readdirSync(root, { withFileTypes: true }).filter((d) => d.isDirectory())) {
    for (const f of readdirSync(join(root, day.name))) if (f.endsWith(".eml")) out.set(f.slice(0, -4), join(root, day.name, f));
  }
  return out;
}

test("DATA_DIR full: 451 4.3.0 for what does not fit, session and server go on, every 250 archived", () =>
  withTmpfs("mailgw-full-", 1, async (mnt) => {
    const dir = serveDir();
    // The database stays off the tiny file system: this test is about the spool filling up.
    const serve = await startServe("source", dir, { DATA_DIR: mnt, DATABASE_URL: `file:${join(dir, "db", "mail-gateway.db")}` });
    try {
      const c = await RawClient.connect(serve.smtpPort);
      await greet(c);
      const body = `${"x".repeat(76)}\r\n`.repeat(5000); // ~390 KB
      const replies: string[] = [];
      const acked = new Map<string, string>();
      for (let i = 0; i < 5; i++) {
        const subject = `big-${i}`;
        const reply = await sendMail(c, "b@company.com", simpleMessage(subject, body));
        replies.push(reply);
        const id = /^250 2\.0\.0 Queued as (\S+)/.exec(reply)?.[1];
        if (id) acked.set(id, subject);
      }
      console.log(`full-disk replies: ${replies.map((r) => r.slice(0, 9)).join(" | ")}`);
      expect(replies.every((r) => /^250 2\.0\.0 /.test(r) || /^451 4\.3\.0 /.test(r))).toBe(true);
      expect(replies.filter((r) => r.startsWith("451")).length).toBeGreaterThan(0);
      expect(acked.size).toBeGreaterThan(0);

      // The same session goes on, and the server still greets new clients.
      expect(await c.cmd("NOOP")).toMatch(/^250/);
      const other = await RawClient.connect(serve.smtpPort);
      expect(await greet(other)).toMatch(/^250/);
      other.end();
      c.end();

      // Everything that got 250 is archived, whole.
      await Bun.sleep(200);
      const files = archived(mnt);
      for (const [id, subject] of acked) {
        const text = readFileSync(files.get(id) ?? "/nonexistent-archive-file", "utf8");
        expect(text.includes(`Subject: ${subject}\r\n`) && text.endsWith(body)).toBe(true);
      }
    } finally {
      expect(await serve.stop("SIGTERM")).toBe(0);
    }
  }));

test("restart after a crash on a full disk: exit 1, one line naming the database and the fix", () =>
  withTmpfs("mailgw-full-restart-", 2, async (mnt) => {
    const dir = serveDir();
    const dbPath = join(mnt, "mail-gateway.db");
    // What a kill -9 between a group's commit and its syncfs leaves: a row whose file never
    // became durable. Recovery must delete it, which a full disk refuses.
    // The crashed serve's spool (without it, serve takes DATA_DIR for the wrong one and refuses).
    mkdirSync(join(mnt, "spool"));
    const db = openDatabase(dbPath);
    const id = newMessageId();
    insertMessage(db, {
      id, receivedAt: Date.now(), clientIp: "192.0.2.1", helo: "x", tls: false, mailFrom: "a@b.org", recipients: ["b@company.com"],
      subject: "s", size: 10, rule: null, category: "default", action: "archive", archive: true, status: "spooled",
    });
    spawnSync("dd", ["if=/dev/zero", `of=${join(mnt, "filler")}`, "bs=64k"]);
    const env = { DATA_DIR: mnt, DATABASE_URL: `file:${dbPath}`, SMTP_HOST: "127.0.0.1", HTTP_HOST: "127.0.0.1" };
    const errorLine = async (): Promise<string> => {
      const r = await runServeOnce("source", dir, env);
      expect(r.exitCode).toBe(1);
      const lines = r.stderr.trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(dbPath);
      expect(lines[0]).toContain("free space there");
      expect(lines[0]).not.toContain("a new file"); // that advice would leave the queue behind
      return lines[0] ?? "";
    };
    // Its WAL index still there (as after a kill -9): the database opens, recovery's delete fails.
    try {
      expect(await errorLine()).toContain(`recovering the spool failed: database or disk is full (database ${dbPath}, DATA_DIR ${mnt})`);
    } catch (err) {
      db.close(); // else the tmpfs stays busy, and its failed unmount hides this failure
      throw err;
    }
    // Closed cleanly (room to checkpoint, WAL and index removed): opening it fails already.
    rmSync(join(mnt, "filler"));
    db.close();
    spawnSync("dd", ["if=/dev/zero", `of=${join(mnt, "filler")}`, "bs=64k"]);
    expect(await errorLine()).toContain("cannot be written");
  }), 30_000);

test("DATA_DIR fills up during a big message: 451, nothing left behind, the log names ENOSPC and the file (not 'short write')", () =>
  withTmpfs("mailgw-full-big-", 2, async (mnt) => {
    const dir = serveDir();
    const serve = await startServe("source", dir, { DATA_DIR: mnt, DATABASE_URL: `file:${join(dir, "db", "mail-gateway.db")}` });
    try {
      const c = await RawClient.connect(serve.smtpPort);
      await greet(c);
      const body = `${"y".repeat(76)}\r\n`.repeat(60_000); // ~4.7 MB, written to the spool as it arrives
      expect(await sendMail(c, "b@company.com", simpleMessage("too-big-for-the-disk", body))).toMatch(/^451 4\.3\.0 /);
      const line = await serve.waitForLog((l) => l.msg === "message not accepted");
      const error = String(line.error);
      expect(error).toContain("ENOSPC");
      expect(error).toContain(join(mnt, "spool"));
      expect(error).not.toContain("short write");
      expect(readdirSync(join(mnt, "spool")).filter((f) => f !== "orphaned")).toEqual([]);
      // The same session goes on and a message that fits is stored.
      expect(await sendMail(c, "b@company.com", simpleMessage("small"))).toMatch(/^250 2\.0\.0 /);
      c.end();
    } finally {
      expect(await serve.stop("SIGTERM")).toBe(0);
    }
  }), 30_000);

async function healthz(url: string): Promise<{ status: number; body: { checks?: { dataDir?: { ok: boolean; reason?: string } } } }> {
  const r = await fetch(`${url}/healthz`);
  return { status: r.status, body: (await r.json()) as { checks?: { dataDir?: { ok: boolean; reason?: string } } } };
}

const FILE_FAILURE = "the last message file (spool or archive) could not be written";

test("today's archive directory unusable (a file in its place): 451, and /healthz says so (503) until a file can be written there again", async () => {
  const dir = serveDir();
  const dataDir = join(dir, "data");
  const serve = await startServe("source", dir, { DATA_DIR: dataDir });
  const today = join(dataDir, "archive", new Date().toISOString().slice(0, 10));
  try {
    mkdirSync(join(dataDir, "archive"), { recursive: true });
    rmSync(today, { recursive: true, force: true });
    writeFileSync(today, "not a directory\n");
    const c = await RawClient.connect(serve.smtpPort);
    await greet(c);
    expect(await sendMail(c)).toMatch(/^451 4\.3\.0 /);
    // The spool probe alone said ok while every archived message got 451.
    const failing = await healthz(serve.httpUrl);
    expect({ status: failing.status, dataDir: failing.body.checks?.dataDir?.ok, reason: failing.body.checks?.dataDir?.reason }).toEqual({ status: 503, dataDir: false, reason: FILE_FAILURE });
    rmSync(today);
    // Healthy again once a file can be written there, before any mail (a balancer that drops an
    // unhealthy gateway sends none); the probe does not create the day directory itself.
    expect((await healthz(serve.httpUrl)).status).toBe(200);
    expect(existsSync(today)).toBe(false);
    expect(await sendMail(c)).toMatch(/^250 2\.0\.0 /);
    expect((await healthz(serve.httpUrl)).status).toBe(200);
    expect(readdirSync(today).filter((f) => !f.endsWith(".eml"))).toEqual([]);
    c.end();
  } finally {
    expect(await serve.stop("SIGTERM")).toBe(0);
  }
}, 60_000);

test("the archive on its own file system, full: 250 (the spool keeps the message), /healthz 503 until an archive copy succeeds again", () =>
  withTmpfs("mailgw-archive-full-", 1, async (mnt) => {
    const dir = serveDir();
    const dataDir = join(dir, "data");
    mkdirSync(dataDir, { recursive: true });
    // DATA_DIR/archive is the mount: a copy, not a link, after the 250 (the finisher's path).
    spawnSync("rmdir", [join(dataDir, "archive")]);
    spawnSync("ln", ["-s", mnt, join(dataDir, "archive")]);
    const filler = join(mnt, "filler");
    spawnSync("dd", ["if=/dev/zero", `of=${filler}`, "bs=64k", "count=100"]);
    const serve = await startServe("source", dir, { DATA_DIR: dataDir });
    try {
      const c = await RawClient.connect(serve.smtpPort);
      await greet(c);
      const reply = await sendMail(c, "b@company.com", simpleMessage("kept", `${"y".repeat(76)}\r\n`.repeat(2000)));
      expect(reply).toMatch(/^250 2\.0\.0 /);
      const id = reply.split(" ").pop() ?? "";
      await serve.waitForLog((l) => l.msg === "archive failed, message stays spooled" && l.id === id);
      const failing = await healthz(serve.httpUrl);
      expect({ status: failing.status, reason: failing.body.checks?.dataDir?.reason }).toEqual({ status: 503, reason: FILE_FAILURE });
      expect(readdirSync(join(dataDir, "spool")).some((f) => f.startsWith(id))).toBe(true);
      rmSync(filler);
      expect(await sendMail(c)).toMatch(/^250 2\.0\.0 /);
      await Bun.sleep(500);
      expect((await healthz(serve.httpUrl)).status).toBe(200);
      c.end();
    } finally {
      expect(await serve.stop("SIGTERM")).toBe(0);
    }
  }));
