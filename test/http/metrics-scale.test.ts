/**
 * /metrics on a year's data: its all-time counters come from counter_totals (one row per series),
 * not from a SUM over every daily_counters row ever written, which held the event loop (SMTP
 * included) ~1 s per scrape after a year of 300 rules. Checked by query plan, not by time.
 */
import type { Database } from "bun:sqlite";
import { afterEach, beforeEach, expect, test } from "bun:test";
import { renderMetrics } from "../../src/http/metrics.ts";
import { collectStats } from "../../src/http/stats-data.ts";
import { bumpCounter, bumpCounterBatch } from "../../src/store/counters.ts";
import { find, parseExposition } from "../helpers/exposition.ts";
import { addMessage, makeFixture, type Fixture } from "./fixture.ts";

const DAY_MS = 86_400_000;
let fx: Fixture;
beforeEach(() => {
  fx = makeFixture();
});
afterEach(() => fx.cleanup());

/** The SQL of every statement `fn` prepares on `db`. */
function statementsOf(db: Database, fn: () => void): string[] {
  const seen: string[] = [];
  const original = db.query.bind(db);
  const spy = (sql: string) => {
    seen.push(sql);
    return original(sql);
  };
  Object.assign(db, { query: spy });
  try {
    fn();
  } finally {
    Object.assign(db, { query: original });
  }
  return seen;
}

test("no statement behind /metrics scans daily_counters", () => {
  addMessage(fx.db, { action: "archive" });
  const now = Date.now();
  const sqls = statementsOf(fx.db, () => renderMetrics(fx.db, collectStats(fx.db, fx.status, now, "mx.test")));
  expect(sqls.length).toBeGreaterThan(0);
  for (const sql of sqls) {
    const params = [...sql.matchAll(/\?/g)].map(() => "x");
    const plan = fx.db.query<{ detail: string }, string[]>(`EXPLAIN QUERY PLAN ${sql}`).all(...params).map((r) => r.detail);
    expect({ sql, plan }).toEqual({ sql, plan: plan.filter((d) => !/^SCAN daily_counters\b/.test(d)) });
  }
});

test("counter_totals stays the sum of daily_counters through inserts, upserts, take-backs and deletes", () => {
  const now = Date.now();
  for (let d = 0; d < 40; d++) {
    bumpCounter(fx.db, now - d * DAY_MS, "received", { rule: `r${d % 3}`, category: "c" }, d + 1);
    bumpCounter(fx.db, now - d * DAY_MS, "received", { rule: `r${d % 3}`, category: "c" }, 2);
  }
  bumpCounterBatch(fx.db, [{ at: now, metric: "action:archive", rule: null, category: "x", n: 5 }]);
  bumpCounterBatch(fx.db, [{ at: now, metric: "action:archive", rule: null, category: "x", n: 2 }], -1);
  fx.db.query("DELETE FROM daily_counters WHERE day = (SELECT MIN(day) FROM daily_counters)").run();
  fx.db.query("UPDATE daily_counters SET rule = 'renamed' WHERE rule = 'r1'").run();
  const sums = fx.db.query("SELECT metric, rule, category, SUM(n) AS n FROM daily_counters GROUP BY metric, rule, category HAVING SUM(n) <> 0").all();
  const totals = fx.db.query("SELECT metric, rule, category, n FROM counter_totals WHERE n <> 0 ORDER BY metric, rule, category").all();
  expect(totals).toEqual(sums);
  const received = find(parseExposition(renderMetrics(fx.db, collectStats(fx.db, fx.status, now, "mx.test"))).samples, "mailgw_messages_received_total");
  expect(received).toBe(fx.db.query<{ n: number }, []>("SELECT SUM(n) AS n FROM daily_counters WHERE metric = 'received'").get()?.n ?? -1);
});

test("the stats page's latest failed deliveries are read from an index, not sorted from every failed row", () => {
  const sqls = statementsOf(fx.db, () => collectStats(fx.db, fx.status, Date.now(), "mx.test")).filter((s) => s.includes("'failed'"));
  expect(sqls.length).toBe(1);
  const plan = fx.db.query<{ detail: string }, [number]>(`EXPLAIN QUERY PLAN ${sqls[0]}`).all(20).map((r) => r.detail);
  expect(plan.join("\n")).not.toContain("TEMP B-TREE");
  expect(plan.join("\n")).toContain("deliveries_failed_latest");
});

test("the stats snapshot reads at most two counter rows per series (today, the earlier days), not one per day", () => {
  const now = Date.now();
  for (let d = 0; d < 30; d++) for (let r = 0; r < 10; r++) bumpCounter(fx.db, now - d * DAY_MS, "received", { rule: `r${r}`, category: "c" }, 1);
  let rowsRead = 0;
  const original = fx.db.query.bind(fx.db);
  Object.assign(fx.db, {
    query: (sql: string) => {
      const stmt = original(sql);
      const all = stmt.all.bind(stmt);
      return Object.assign(stmt, { all: (...p: never[]) => { const rows = all(...p); rowsRead += rows.length; return rows; } });
    },
  });
  let s: ReturnType<typeof collectStats>;
  try {
    s = collectStats(fx.db, fx.status, now, "mx.test");
  } finally {
    Object.assign(fx.db, { query: original });
  }
  expect(rowsRead).toBeLessThanOrEqual(2 * 10 + 30);
  expect(s.totals.last30Days.received).toBe(300);
  expect(s.totals.today.received).toBe(10);
  expect(s.receivedPerDay.map((d) => d.received)).toEqual(Array(30).fill(10));
});
