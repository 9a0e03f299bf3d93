import { expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase, schemaVersion } from "../../src/store/db.ts";
import { bumpCounter } from "../../src/store/counters.ts";
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
