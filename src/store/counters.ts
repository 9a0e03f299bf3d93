/**
 * Daily counters (see migrations.ts for the metric names). Writers call `bump` inside their
 * own transaction; readers (stats page, metrics) sum rows. Pure SQL, no caching: SQLite
 * answers these from one small table.
 */
import type { Database } from "bun:sqlite";
import { dayKey } from "./db.ts";

export type CounterMetric =
  | "received"
  | "session"
  | "session_tls"
  | `action:${string}`
  | `delivered:${"forward" | "webhook"}`
  | `deferred:${"forward" | "webhook"}`
  | `failed:${"forward" | "webhook"}`;

export function bumpCounter(
  db: Database,
  at: number,
  metric: CounterMetric,
  labels: { rule?: string | null; category?: string | null } = {},
  n = 1,
): void {
  db.query(
    `INSERT INTO daily_counters (day, metric, rule, category, n) VALUES (?, ?, ?, ?, ?)
     ON CONFLICT (day, metric, rule, category) DO UPDATE SET n = n + excluded.n`,
  ).run(dayKey(at), metric, labels.rule ?? "", labels.category ?? "", n);
}
