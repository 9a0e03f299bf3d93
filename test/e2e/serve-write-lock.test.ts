/**
 * The real `mailgw serve` while another process holds SQLite's write lock (as `mailgw queue`
 * can, or a backup tool): the message being stored gets its 250 only once the lock is free
 * (durability before 250), but the SMTP event loop never waits for the lock — another session
 * keeps getting its replies at once, across a session-counter flush (every 2 s) that falls
 * inside the hold. Before, the intake's transaction and the counter flush slept in SQLite's busy
 * handler on the event loop, so every session froze until the lock was released.
 * The same for the work after a 250 (the archive copy of a forward with `archive: true`, its row
 * marked done): its commit waits for the lock on timers, never on the event loop.
 */
import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { RawClient, greet, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { RULES_YAML, serveDir, startServe } from "../smtp/serve-process.ts";

const HOLD_MS = 2600; // longer than the session counters' 2 s flush interval

test("a write lock held by another process delays that 250, never the other sessions", async () => {
  if (process.platform !== "linux") {
    console.log("skipped: the spool writer thread needs Linux (syncfs)");
    return;
  }
  const dir = serveDir();
  const dbPath = join(dir, "data", "mail-gateway.db");
  const serve = await startServe("source", dir, { DATABASE_URL: `file:${dbPath}` });
  try {
    // A finished session: its count waits in memory for the next counter flush.
    const first = await RawClient.connect(serve.smtpPort);
    await greet(first);
    expect(await sendMail(first, "b@company.com", simpleMessage("before the lock"))).toStartWith("250 2.0.0");
    expect(await first.cmd("QUIT")).toStartWith("221");

    const other = await RawClient.connect(serve.smtpPort);
    await greet(other);
    const sender = await RawClient.connect(serve.smtpPort);
    await greet(sender);

    const locker = new Database(dbPath);
    locker.exec("PRAGMA busy_timeout = 5000");
    locker.exec("BEGIN IMMEDIATE");
    const lockedAt = performance.now();
    let stored: Promise<string>;
    const slowest: number[] = [];
    try {
      stored = sendMail(sender, "b@company.com", simpleMessage("while locked"));
      // The other session is served throughout the hold.
      while (performance.now() - lockedAt < HOLD_MS) {
        const t0 = performance.now();
        expect(await other.cmd("NOOP", 2000)).toStartWith("250");
        slowest.push(performance.now() - t0);
        await Bun.sleep(50);
      }
      // Still no 250 for the message whose rows could not be written yet.
      const early = await Promise.race([stored, Bun.sleep(10).then(() => "pending")]);
      expect(early).toBe("pending");
    } finally {
      locker.exec("COMMIT");
    }
    const reply = await stored;
    expect(reply).toStartWith("250 2.0.0");
    expect(Math.max(...slowest)).toBeLessThan(500);
    expect(slowest.length).toBeGreaterThan(20);

    const id = /Queued as (\S+)/.exec(reply)?.[1] ?? "";
    const day = readdirSync(join(dir, "data", "archive"))[0] ?? "";
    expect(readdirSync(join(dir, "data", "archive", day))).toContain(`${id}.eml`);
    // The session count kept during the hold is written once the lock is free.
    other.end();
    sender.end();
    await Bun.sleep(2500);
    const sessions = locker.query<{ n: number }, []>("SELECT sum(n) AS n FROM daily_counters WHERE metric = 'session'").get()?.n;
    expect(sessions).toBeGreaterThanOrEqual(1);
    locker.close();
  } finally {
    expect(await serve.stop("SIGTERM")).toBe(0);
  }
}, 30_000);

test("post-250 work meeting a write lock held by another process never stalls the other sessions", async () => {
  if (process.platform !== "linux") {
    console.log("skipped: the spool writer thread needs Linux (syncfs)");
    return;
  }
  const dir = serveDir();
  writeFileSync(
    join(dir, "rules.yaml"),
    `${RULES_YAML}  - name: keep-copy
    priority: 50
    category: sales
    action: forward
    archive: true
    forward_to: [sales@partner.example]
    conditions:
      - { field: subject, operator: contains, value: keepcopy }
`,
  );
  const dbPath = join(dir, "data", "mail-gateway.db");
  const serve = await startServe("source", dir, { DATABASE_URL: `file:${dbPath}` });
  const locker = new Database(dbPath);
  // serve's own commits (the post-250 "done", the delivery thread) can hold the lock for a
  // moment just when the test takes it: wait for them rather than fail with SQLITE_BUSY.
  locker.exec("PRAGMA busy_timeout = 5000");
  try {
    const other = await RawClient.connect(serve.smtpPort);
    await greet(other);
    const sender = await RawClient.connect(serve.smtpPort);
    await greet(sender);
    // The lock must be taken between the 250 and the post-250 commit (a few ms): tried until it is.
    let id = "";
    let statusWhileLocked = "";
    const slowest: number[] = [];
    for (let attempt = 0; attempt < 20 && statusWhileLocked !== "spooled"; attempt++) {
      const reply = await sendMail(sender, "b@company.com", simpleMessage(`keepcopy ${attempt}`));
      expect(reply).toStartWith("250 2.0.0");
      locker.exec("BEGIN IMMEDIATE");
      try {
        id = /Queued as (\S+)/.exec(reply)?.[1] ?? "";
        statusWhileLocked = locker.query<{ status: string }, [string]>("SELECT status FROM messages WHERE id = ?").get(id)?.status ?? "";
        if (statusWhileLocked !== "spooled") continue;
        const lockedAt = performance.now();
        while (performance.now() - lockedAt < 1500) {
          const t0 = performance.now();
          expect(await other.cmd("NOOP", 2000)).toStartWith("250");
          slowest.push(performance.now() - t0);
          await Bun.sleep(50);
        }
        // Still not done: it is waiting for the lock.
        expect(locker.query<{ status: string }, [string]>("SELECT status FROM messages WHERE id = ?").get(id)?.status).toBe("spooled");
      } finally {
        locker.exec("COMMIT");
      }
    }
    expect(statusWhileLocked).toBe("spooled");
    expect(slowest.length).toBeGreaterThan(10);
    expect(Math.max(...slowest)).toBeLessThan(500);
    // Once the lock is free, the copy is recorded and the forward still waits (no relay: held).
    let row: { status: string; archive_path: string | null } | null = null;
    for (let i = 0; i < 100 && row?.status !== "done"; i++) {
      await Bun.sleep(50);
      row = locker.query<{ status: string; archive_path: string | null }, [string]>("SELECT status, archive_path FROM messages WHERE id = ?").get(id);
    }
    expect(row?.status).toBe("done");
    expect(readdirSync(join(dir, "data", "archive", row?.archive_path?.split("/")[1] ?? ""))).toContain(`${id}.eml`);
    const delivery = locker.query<{ state: string }, [string]>("SELECT state FROM deliveries WHERE message_id = ?").get(id);
    expect(delivery?.state).toBe("held");
    other.end();
    sender.end();
  } finally {
    if (locker.inTransaction) locker.exec("ROLLBACK");
    locker.close();
    expect(await serve.stop("SIGTERM")).toBe(0);
  }
}, 60_000);
