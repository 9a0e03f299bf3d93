import { expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { openDatabase, schemaVersion } from "../../src/store/db.ts";
import { bumpCounter } from "../../src/store/counters.ts";
import { durationBucket, durationHistogram } from "../../src/store/delivery-durations.ts";
import { MIGRATIONS } from "../../src/store/migrations.ts";

const dbPath = () => join(mkdtempSync(join(tmpdir(), "mailgw-db-")), "nested", "m.db");

test("migrations run once, in WAL mode, and reopening is a no-op", () => {
  const path = dbPath();
  const db = openDatabase(path);
  expect(schemaVersion(db)).toBe(MIGRATIONS.at(-1)!.version);
  expect(db.query<{ journal_mode: string }, []>("PRAGMA journal_mode").get()?.journal_mode).toBe("wal");
  db.close();
  const again = openDatabase(path);
  expect(schemaVersion(again)).toBe(MIGRATIONS.at(-1)!.version);
});

test("a database from a newer mailgw is refused with a clear message", () => {
  const path = dbPath();
  const db = openDatabase(path);
  db.exec("PRAGMA user_version = 999");
  db.close();
  expect(() => openDatabase(path)).toThrow(/schema version 999, newer than this mailgw/);
  // Met when rolling back an upgrade: "upgrade mailgw" alone would send the admin the wrong way.
  expect(() => openDatabase(path)).toThrow(/run the newer mailgw .*, or restore the database backup taken before the upgrade/);
  expect(() => openDatabase(path, { migrate: false })).toThrow(/restore the database backup taken before the upgrade/);
});

test("counters accumulate per day, metric, rule and category", () => {
  const db = openDatabase(dbPath());
  const t = Date.UTC(2026, 10, 22, 12);
  bumpCounter(db, t, "received", { rule: "r1", category: "spam" });
  bumpCounter(db, t, "received", { rule: "r1", category: "spam" }, 2);
  bumpCounter(db, t + 86400000, "received", { rule: "r1", category: "spam" });
  const rows = db.query("SELECT day, metric, rule, category, n FROM daily_counters ORDER BY day").all();
  expect(rows).toEqual([
    { day: "2026-11-22", metric: "received", rule: "r1", category: "spam", n: 3 },
    { day: "2026-11-23", metric: "received", rule: "r1", category: "spam", n: 1 },
  ]);
});

test("migration 5 keeps every delivery and attempt (orphans aside), and ids are never reused after a drop", () => {
  const path = dbPath();
  // A database as mailgw left it at schema 4, with a delivery and two attempts.
  mkdirSync(dirname(path), { recursive: true });
  const old = new Database(path, { create: true, strict: true });
  old.exec("PRAGMA journal_mode = WAL");
  for (const m of MIGRATIONS.filter((m) => m.version <= 4)) old.exec(m.sql);
  old.exec("PRAGMA user_version = 4");
  old.exec(`INSERT INTO messages (id, received_at, client_ip, helo, tls, mail_from, recipients, subject, size,
              rule, category, action, status) VALUES ('m1', 1, '127.0.0.1', 'h', 0, 'a@x', '[]', 's', 1, 'r', 'c', 'forward', 'done')`);
  old.exec(`INSERT INTO deliveries (id, message_id, kind, target, rule, category, state, attempts, created_at,
              next_attempt_at, updated_at, retry_from, retry_attempts) VALUES (7, 'm1', 'forward', '["b@y"]', 'r', 'c', 'failed', 2, 1, 1, 1, 5, 1)`);
  old.exec(`INSERT INTO delivery_attempts (id, delivery_id, at, target, duration_ms, ok, reply)
              VALUES (3, 7, 1, 'relay', 10, 0, '451 later'), (4, 7, 2, 'relay', 12, 0, '550 no')`);
  // Orphans a DELETE in the sqlite3 shell (foreign keys off there) can leave: they must not block
  // the upgrade (the copy checks foreign keys), and nothing could use them.
  old.exec(`INSERT INTO deliveries (id, message_id, kind, target, rule, category, state, created_at, next_attempt_at, updated_at)
              VALUES (6, 'gone', 'forward', '[]', 'r', 'c', 'failed', 1, 1, 1)`);
  old.exec(`INSERT INTO delivery_attempts (id, delivery_id, at, target, duration_ms, ok) VALUES (2, 99, 1, 'relay', 1, 0)`);
  old.close();

  const db = openDatabase(path);
  expect(schemaVersion(db)).toBe(MIGRATIONS.at(-1)!.version);
  expect(db.query("SELECT id, message_id, state, attempts, retry_from, retry_attempts FROM deliveries").all()).toEqual([
    { id: 7, message_id: "m1", state: "failed", attempts: 2, retry_from: 5, retry_attempts: 1 },
  ]);
  expect(db.query("SELECT id, delivery_id, reply FROM delivery_attempts ORDER BY id").all()).toEqual([
    { id: 3, delivery_id: 7, reply: "451 later" },
    { id: 4, delivery_id: 7, reply: "550 no" },
  ]);
  expect(db.query("PRAGMA foreign_key_check").all()).toEqual([]);
  const attemptsSql = db.query<{ sql: string }, []>("SELECT sql FROM sqlite_schema WHERE name = 'delivery_attempts'").get()!.sql;
  expect(attemptsSql).toContain('REFERENCES "deliveries"(id)');
  const indexes = db.query<{ name: string }, []>("SELECT name FROM sqlite_schema WHERE type = 'index' AND name LIKE 'deliver%' ORDER BY name").all();
  expect(indexes.map((i) => i.name)).toEqual(["deliveries_due", "deliveries_failed_latest", "deliveries_kind_due", "deliveries_message", "deliveries_webhook_due", "delivery_attempts_delivery"]);

  // `queue drop` of the newest delivery, then a new one: a fresh id, not 7 again (nor attempt 4).
  db.exec("DELETE FROM delivery_attempts WHERE delivery_id = 7; DELETE FROM deliveries WHERE id = 7");
  const next = db
    .query<{ id: number }, []>(`INSERT INTO deliveries (message_id, kind, target, category, state, created_at, next_attempt_at, updated_at)
              VALUES ('m1', 'forward', '[]', 'c', 'queued', 2, 2, 2) RETURNING id`)
    .get()!;
  expect(next.id).toBe(8);
  const attempt = db
    .query<{ id: number }, []>(`INSERT INTO delivery_attempts (delivery_id, at, target, duration_ms, ok) VALUES (8, 3, 'relay', 1, 1) RETURNING id`)
    .get()!;
  expect(attempt.id).toBe(5);
});

test("migration 6 counts the attempts on record into the duration histogram's daily counters", () => {
  const path = dbPath();
  mkdirSync(dirname(path), { recursive: true });
  const old = new Database(path, { create: true, strict: true });
  old.exec("PRAGMA journal_mode = WAL");
  for (const m of MIGRATIONS.filter((m) => m.version <= 5)) old.exec(m.sql);
  old.exec("PRAGMA user_version = 5");
  old.exec(`INSERT INTO messages (id, received_at, client_ip, helo, tls, mail_from, recipients, subject, size,
              rule, category, action, status) VALUES ('m1', 1, '127.0.0.1', 'h', 0, 'a@x', '[]', 's', 1, 'r', 'c', 'forward', 'done')`);
  old.exec(`INSERT INTO deliveries (id, message_id, kind, target, category, state, created_at, next_attempt_at, updated_at)
              VALUES (1, 'm1', 'forward', '[]', 'c', 'failed', 1, 1, 1), (2, 'm1', 'webhook', 'http://h/', 'c', 'delivered', 1, 1, 1)`);
  const day1 = Date.UTC(2026, 10, 22, 23, 59);
  const day2 = Date.UTC(2026, 10, 23, 0, 1);
  old.exec(`INSERT INTO delivery_attempts (delivery_id, at, target, duration_ms, ok) VALUES
              (1, ${day1}, 'relay', 50, 0), (1, ${day1}, 'relay', 51, 0), (1, ${day2}, 'relay', 700, 0),
              (2, ${day2}, 'hook', 200000, 1), (2, ${day2}, 'hook', -5, 1)`);
  old.close();

  const db = openDatabase(path);
  const rows = db.query<{ day: string; metric: string; n: number }, []>("SELECT day, metric, n FROM daily_counters ORDER BY day, metric").all();
  expect(rows).toEqual([
    { day: "2026-11-22", metric: "duration:forward:0.05", n: 1 },
    { day: "2026-11-22", metric: "duration:forward:0.1", n: 1 },
    { day: "2026-11-22", metric: "duration_ms:forward", n: 101 },
    { day: "2026-11-23", metric: "duration:forward:1", n: 1 },
    { day: "2026-11-23", metric: "duration:webhook:+Inf", n: 1 },
    { day: "2026-11-23", metric: "duration:webhook:0.05", n: 1 },
    { day: "2026-11-23", metric: "duration_ms:forward", n: 700 },
    { day: "2026-11-23", metric: "duration_ms:webhook", n: 200000 },
  ]);
  // The same buckets as an attempt recorded now would bump.
  for (const [ms, le] of [[50, "0.05"], [51, "0.1"], [700, "1"], [200000, "+Inf"], [-5, "0.05"]] as const) expect(durationBucket(ms)).toBe(le);
  expect(durationHistogram(rows, "forward")).toEqual({ buckets: [1, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3], count: 3, sumSeconds: 0.801 });
  expect(durationHistogram(rows, "webhook")).toEqual({ buckets: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], count: 2, sumSeconds: 200 });
});

test("every connection commits durably (synchronous FULL) and enforces foreign keys", () => {
  const db = openDatabase(dbPath());
  expect(db.query<{ synchronous: number }, []>("PRAGMA synchronous").get()?.synchronous).toBe(2);
  expect(db.query<{ foreign_keys: number }, []>("PRAGMA foreign_keys").get()?.foreign_keys).toBe(1);
  expect(() => db.run("INSERT INTO deliveries (message_id, kind, target, rule, category, state, attempts, created_at, next_attempt_at, updated_at) VALUES ('none', 'forward', '[]', '', '', 'queued', 0, 0, 0, 0)")).toThrow(/FOREIGN KEY/);
  db.close();
});

test("counter days are UTC days, whatever the machine's time zone", () => {
  // 20:00 UTC on 1 January is already 2 January in Kiritimati (UTC+14).
  const script = `import { dayKey } from ${JSON.stringify(join(import.meta.dir, "../../src/store/db.ts"))}; console.log(dayKey(Date.UTC(2026, 0, 1, 20)), new Date(Date.UTC(2026, 0, 1, 20)).getDate());`;
  const run = Bun.spawnSync([process.execPath, "-e", script], { env: { ...process.env, TZ: "Pacific/Kiritimati" } });
  expect(run.stdout.toString().trim()).toBe("2026-01-01 2"); // the second figure: the zone was in effect
});

test("migration 10 backfills the archived counter where it is missing, and keeps the figures of a database that counts it", () => {
  const path = dbPath();
  mkdirSync(dirname(path), { recursive: true });
  const old = new Database(path, { create: true });
  for (const m of MIGRATIONS.filter((m) => m.version <= 9)) old.exec(m.sql);
  old.exec("PRAGMA user_version = 9");
  const insert = old.query(
    `INSERT INTO messages (id, received_at, client_ip, helo, tls, mail_from, recipients, subject, size, rule, category, action, archive, status)
     VALUES (?, ?, '192.0.2.1', 'h', 0, 'a@b.example', '[]', 's', 1, ?, ?, ?, ?, 'done')`,
  );
  const oct = Date.UTC(2026, 9, 1, 12);
  const nov = Date.UTC(2026, 10, 1, 12);
  insert.run("m1", oct, "keep", "kept", "forward", 1);
  insert.run("m2", oct, "keep", "kept", "forward", 1);
  insert.run("m3", oct, "fwd", "sales", "forward", 0);
  insert.run("m4", nov, "keep", "kept", "forward", 1);
  insert.run("m5", nov, null, "default", "archive", 1);
  // October: counted before `archived` existed (an archive-action row of a pruned message too).
  bumpCounter(old, oct, "action:archive", { category: "default" }, 4);
  // November: counted by a version that has it (the forward's copy and the archived message).
  bumpCounter(old, nov, "action:archive", { category: "default" });
  bumpCounter(old, nov, "archived", { category: "default" });
  bumpCounter(old, nov, "archived", { rule: "keep", category: "kept" });
  old.close();

  const db = openDatabase(path);
  const rows = db.query("SELECT day, rule, category, n FROM daily_counters WHERE metric = 'archived' ORDER BY day, rule").all();
  expect(rows).toEqual([
    { day: "2026-10-01", rule: "", category: "default", n: 4 },
    { day: "2026-10-01", rule: "keep", category: "kept", n: 2 },
    { day: "2026-11-01", rule: "", category: "default", n: 1 },
    { day: "2026-11-01", rule: "keep", category: "kept", n: 1 },
  ]);
  expect(db.query("SELECT n FROM counter_totals WHERE metric = 'archived' ORDER BY rule").all()).toEqual([{ n: 5 }, { n: 3 }]);
});
