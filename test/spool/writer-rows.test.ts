/**
 * The spool writer thread commits the intake's rows on its own connection (spool-flusher.ts
 * with a database): rows numbered per group, files written after the rows, deliveries
 * released only after the sync; a group whose transaction fails is refused alone and none of
 * its files are written; the WAL on another file system is fsynced after the syncfs; a
 * database the thread cannot open leaves the rows to the caller.
 */
import type { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { SpoolJob } from "../../src/spool/incoming-file.ts";
import { IntakeRowsError, SpoolFlusher } from "../../src/spool/spool-flusher.ts";
import { openDatabase } from "../../src/store/db.ts";
import type { IntakeRowItem } from "../../src/store/intake-rows.ts";
import { NOT_YET_DURABLE_AT } from "../../src/store/messages.ts";

interface Env {
  dir: string;
  db: Database;
  dbPath: string;
  flusher: SpoolFlusher;
}

async function withWriter(walFsync: "none" | "wal" | "missing", body: (env: Env) => Promise<void>): Promise<void> {
  if (process.platform !== "linux") {
    console.log("skipped: the spool writer thread needs Linux (syncfs)");
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), "writer-rows-"));
  const dbPath = join(dir, "mailgw.db");
  const db = openDatabase(dbPath);
  const wal = { none: null, wal: `${dbPath}-wal`, missing: join(dir, "no-such-dir", "x-wal") }[walFsync];
  const started = await SpoolFlusher.start(dir, { path: dbPath, walFsync: wal });
  if (!started.flusher) throw new Error(`no flusher: ${started.reason}`);
  try {
    expect(started.flusher.rowsUnavailable).toBeNull();
    await body({ dir, db, dbPath, flusher: started.flusher });
  } finally {
    await started.flusher.close();
    db.close();
    await rm(dir, { recursive: true, force: true });
  }
}

function item(id: string, opts: { job?: number | null; forward?: boolean } = {}): IntakeRowItem {
  const receivedAt = Date.now();
  return {
    row: {
      id, receivedAt, clientIp: "192.0.2.1", helo: "x", tls: false, mailFrom: "a@b.org", recipients: ["bob@example.com"],
      subject: "s", size: 5, rule: opts.forward ? "to-sales" : null, category: "default",
      action: opts.forward ? "forward" : "archive", archive: !opts.forward, status: "done",
    },
    spoolCrc: opts.job === undefined || opts.job === null ? null : 1234,
    deliveries: opts.forward
      ? [{ messageId: id, kind: "forward", target: ["sales@partner.org"], rule: "to-sales", category: "default", state: "queued", createdAt: receivedAt }]
      : [],
    job: opts.job ?? null,
  };
}

function job(dir: string, id: string): SpoolJob {
  return { tmp: join(dir, `${id}.tmp`), final: join(dir, `${id}.eml`), bytes: new TextEncoder().encode(`body of ${id}`) };
}

const seqOf = (db: Database, id: string) => db.query<{ commit_seq: number }, [string]>("SELECT commit_seq FROM messages WHERE id = ?").get(id)?.commit_seq;
const meta = (db: Database, key: string) => db.query<{ value: string }, [string]>("SELECT value FROM meta WHERE key = ?").get(key)?.value;

test("rows are committed by the writer thread, numbered per group; deliveries released after the sync", () =>
  withWriter("none", async ({ dir, db, flusher }) => {
    const failures = await flusher.flush([job(dir, "m1")], [item("m1", { job: 0, forward: true }), item("m2")]);
    expect(failures).toEqual([null]);
    expect(await readFile(join(dir, "m1.eml"), "utf8")).toBe("body of m1");
    expect(seqOf(db, "m1")).toBe(1);
    expect(seqOf(db, "m2")).toBe(1);
    const d = db.query<{ next_attempt_at: number; created_at: number }, []>("SELECT next_attempt_at, created_at FROM deliveries").get();
    expect(d?.next_attempt_at).not.toBe(NOT_YET_DURABLE_AT);
    expect(d?.next_attempt_at).toBe(d!.created_at);
    const received = db.query<{ n: number }, []>("SELECT sum(n) AS n FROM daily_counters WHERE metric = 'received'").get();
    expect(received?.n).toBe(2);
    // Written once the group is durable, before the flush resolves (the callers' 250s).
    expect(meta(db, "intake_seq")).toBe("1");
    expect(meta(db, "intake_durable_seq")).toBe("1");

    // A group without deliveries (archive only) is marked durable too.
    await flusher.flush([job(dir, "m3")], [item("m3", { job: 0 })]);
    expect(seqOf(db, "m3")).toBe(2);
    expect(meta(db, "intake_seq")).toBe("2");
    expect(meta(db, "intake_durable_seq")).toBe("2");
  }));

test("a group whose transaction fails is refused alone, its files never written", () =>
  withWriter("none", async ({ dir, db, flusher }) => {
    // The first two flushes go to the thread at once; the last two share the next batch.
    const results = await Promise.allSettled([
      flusher.flush([job(dir, "a1")], [item("a1", { job: 0 })]),
      flusher.flush([job(dir, "a2")], [item("a2", { job: 0 })]),
      flusher.flush([job(dir, "dup")], [item("dup", { job: 0 }), item("a1")]), // a1 again: primary key
      flusher.flush([job(dir, "a4")], [item("a4", { job: 0 })]),
    ]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "rejected", "fulfilled"]);
    const refused = (results[2] as PromiseRejectedResult).reason;
    expect(refused).toBeInstanceOf(IntakeRowsError);
    expect(String(refused.message)).toContain("UNIQUE");
    expect(existsSync(join(dir, "dup.eml"))).toBe(false);
    expect(existsSync(join(dir, "dup.tmp"))).toBe(false);
    expect(await readFile(join(dir, "a4.eml"), "utf8")).toBe("body of a4");
    const ids = db.query<{ id: string }, []>("SELECT id FROM messages ORDER BY id").all().map((r) => r.id);
    expect(ids).toEqual(["a1", "a2", "a4"]);
  }));

test("a job that fails keeps its message's deliveries held back; the others are released", () =>
  withWriter("none", async ({ dir, db, flusher }) => {
    await writeFile(join(dir, "b2.tmp"), "in the way"); // exclusive create fails
    const failures = await flusher.flush([job(dir, "b1"), job(dir, "b2")], [item("b1", { job: 0, forward: true }), item("b2", { job: 1, forward: true })]);
    expect(failures[0]).toBeNull();
    expect(failures[1]).toContain("EEXIST");
    const held = db.query<{ message_id: string }, [number]>("SELECT message_id FROM deliveries WHERE next_attempt_at = ?").all(NOT_YET_DURABLE_AT);
    expect(held.map((r) => r.message_id)).toEqual(["b2"]); // the caller takes b2 back (intake.fail)
  }));

test("the WAL on another file system is fsynced after the syncfs; if that fails, the flush fails", async () => {
  await withWriter("wal", async ({ dir, flusher }) => {
    expect(await flusher.flush([job(dir, "w1")], [item("w1", { job: 0 })])).toEqual([null]);
  });
  await withWriter("missing", async ({ dir, db, flusher }) => {
    const err = await flusher.flush([job(dir, "w2")], [item("w2", { job: 0, forward: true })]).then(() => null, (e: Error) => e);
    expect(err?.message).toContain("fsync of");
    // Not durable, so nothing moves on: the delivery stays held back (no relay gets a message
    // whose client was answered 451) and the durable mark stays behind the group, so recovery
    // still checks its row after a crash.
    const d = db.query<{ next_attempt_at: number }, []>("SELECT next_attempt_at FROM deliveries").get();
    expect(d?.next_attempt_at).toBe(NOT_YET_DURABLE_AT);
    expect(meta(db, "intake_seq")).toBe("1");
    expect(meta(db, "intake_durable_seq") ?? "0").toBe("0");
  });
});

test("a database the thread cannot open: the rows stay with the caller, files still flush", async () => {
  if (process.platform !== "linux") {
    console.log("skipped: the spool writer thread needs Linux (syncfs)");
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), "writer-rows-nodb-"));
  await writeFile(join(dir, "not-a-dir"), "x");
  const started = await SpoolFlusher.start(dir, { path: join(dir, "not-a-dir", "mailgw.db"), walFsync: null });
  if (!started.flusher) throw new Error(`no flusher: ${started.reason}`);
  try {
    expect(started.flusher.rowsUnavailable).toContain("cannot open database");
    await expect(started.flusher.flush([], [item("x")])).rejects.toBeInstanceOf(IntakeRowsError);
    expect(await started.flusher.flush([job(dir, "y")])).toEqual([null]);
  } finally {
    await started.flusher.close();
    await rm(dir, { recursive: true, force: true });
  }
});
