/**
 * Daily counters (see migrations.ts for the metric names). Writers call `bump` inside their
 * own transaction; readers (stats page, metrics) sum rows. Pure SQL, no caching: SQLite
 * answers these from one small table.
 */
import type { Database } from "bun:sqlite";
import { dayKey } from "./db.ts";

export type CounterMetric =
  | "received"
  /** A copy went to the archive: the archive action, or `archive: true` on a forward/webhook rule. */
  | "archived"
  | "session"
  | "session_tls"
  | `refused:${string}`
  | `action:${string}`
  | `delivered:${"forward" | "webhook"}`
  | `deferred:${"forward" | "webhook"}`
  | `failed:${"forward" | "webhook"}`
  | `duration:${"forward" | "webhook"}:${string}`
  | `duration_ms:${"forward" | "webhook"}`;

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

/** One increment of a counter row, as the writers of a group collect them. */
export interface CounterIncrement {
  at: number;
  metric: CounterMetric;
  rule: string | null;
  category: string;
  /** How much to add (default 1): a duration sum adds milliseconds. */
  n?: number;
}

/**
 * Bumps counters for a whole group of increments, each (day, metric, rule, category) row ONCE
 * by its total × `sign`: a group of 50 messages costs two upserts, not a hundred.
 */
export function bumpCounterBatch(db: Database, increments: Iterable<CounterIncrement>, sign: 1 | -1 = 1): void {
  const sums = new Map<string, CounterIncrement & { n: number }>();
  for (const inc of increments) {
    const key = `${dayKey(inc.at)}\u0000${inc.metric}\u0000${inc.rule ?? ""}\u0000${inc.category}`;
    const cur = sums.get(key);
    if (cur) cur.n += inc.n ?? 1;
    else sums.set(key, { ...inc, n: inc.n ?? 1 });
  }
  for (const s of sums.values()) bumpCounter(db, s.at, s.metric, { rule: s.rule, category: s.category }, sign * s.n);
}

/**
 * SMTP sessions and the gateway's refusals (smtp/refusals.ts, by reason), counted in memory
 * between two commits (serve/session-counters.ts, and the delivery thread that commits them).
 */
export interface SessionCounts {
  sessions: number;
  tls: number;
  refused: Record<string, number>;
}

export function emptySessionCounts(): SessionCounts {
  return { sessions: 0, tls: 0, refused: {} };
}

export function hasSessionCounts(c: SessionCounts): boolean {
  return c.sessions > 0 || c.tls > 0 || Object.values(c.refused).some((n) => n > 0);
}

/** `into` += `c` × `sign` (−1 once `c` is committed). */
export function addSessionCounts(into: SessionCounts, c: SessionCounts, sign: 1 | -1 = 1): void {
  into.sessions += sign * c.sessions;
  into.tls += sign * c.tls;
  for (const [reason, n] of Object.entries(c.refused)) {
    const left = (into.refused[reason] ?? 0) + sign * n;
    if (left === 0) delete into.refused[reason];
    else into.refused[reason] = left;
  }
}

/** Writes `c` at day `at`; call inside a transaction. */
export function bumpSessionCounts(db: Database, at: number, c: SessionCounts): void {
  if (c.sessions > 0) bumpCounter(db, at, "session", {}, c.sessions);
  if (c.tls > 0) bumpCounter(db, at, "session_tls", {}, c.tls);
  for (const [reason, n] of Object.entries(c.refused)) if (n > 0) bumpCounter(db, at, `refused:${reason}`, {}, n);
}
