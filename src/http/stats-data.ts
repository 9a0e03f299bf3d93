/**
 * Collects the figures behind /stats, /stats.json and /metrics from SQLite (read only) and
 * the live StatusSource. Totals come from daily_counters (one small table), the queue from
 * the deliveries_due index; the messages table is only joined for the 20 failed deliveries
 * shown. Aggregated per request: cheap at a gateway's scale, never stale.
 * Trusts: the schema from store/migrations.ts. Values that came from mail (subjects,
 * addresses, relay errors) are returned as-is: the renderers escape them.
 * Failure: a database error propagates; the server answers 500 (or 503 for /healthz).
 */
import { shownWebhookUrl } from "../act/redact-url.ts";
import type { Database } from "bun:sqlite";
import type { Action, DeliveryKind, DeliveryState } from "../types.ts";
import { dayKey } from "../store/db.ts";
import { isRefusalReason, REFUSAL_REASONS, type RefusalReason } from "../smtp/refusals.ts";
import { VERSION_STRING } from "../version.ts";
import { deliveriesByRule, deliveryMetric, type DeliveryResult, type DeliveryRuleCount } from "./deliveries-by-rule.ts";
import { uptimeSeconds, type RelayStatus, type RulesStatus, type StatusSource } from "./status-source.ts";

/** Days in the received-per-day chart. */
export const CHART_DAYS = 30;
/** Failed deliveries listed on the page: enough to spot a pattern, small enough to render fast. */
export const FAILED_SHOWN = 20;
const DAY_MS = 86_400_000;

export const ACTIONS: readonly Action[] = ["reject", "archive", "forward", "webhook", "drop"];
export const DELIVERY_KINDS: readonly DeliveryKind[] = ["forward", "webhook"];
/** Queue states that count towards depth (delivered is history, not queue). */
export const QUEUE_STATES = ["queued", "deferred", "held", "delivering", "failed"] as const satisfies readonly DeliveryState[];
export type QueueState = (typeof QUEUE_STATES)[number];
export type { DeliveryResult };

export interface PeriodTotals {
  received: number;
  /** Messages with a copy in the archive (the archive action, and rules with `archive: true`). */
  archived: number;
  sessions: number;
  tlsSessions: number;
  /** tlsSessions / sessions, null when there were no sessions. */
  tlsShare: number | null;
  byAction: Record<Action, number>;
  /** Clients the gateway itself refused (relaying, size, rate limit...), by reason: smtp/refusals.ts. */
  refused: Record<RefusalReason, number>;
  deliveries: Record<DeliveryKind, Record<DeliveryResult, number>>;
}

export interface CategoryCount {
  category: string;
  today: number;
  last30Days: number;
}

export interface FailedDelivery {
  id: number;
  messageId: string;
  kind: DeliveryKind;
  /** Where it was going: addresses for forward, URL without credentials or query for webhook. */
  target: string;
  attempts: number;
  failedAt: string;
  lastError: string | null;
  subject: string | null;
  mailFrom: string | null;
  retryCommand: string;
}

export interface StatsSnapshot {
  generatedAt: string;
  version: string;
  startedAt: string;
  uptimeSeconds: number;
  /** UTC day of `generatedAt`, as used by the counters. */
  today: string;
  smtp: { hostname: string; listening: boolean; tls: { enabled: boolean; required: boolean } };
  /** `suspended`: as RelayStatus's, with ISO times. `warning`: the relay is missing, or suspended. */
  relay: Omit<RelayStatus, "suspended"> & { suspended: { since: string; until: string; reason: string } | null; warning: string | null };
  rules: { version: string | null; loadedAt: string | null; lastError: string | null; lastErrorAt: string | null; reloads: RulesStatus["reloads"] };
  /** `warnings`: file systems with less free space than 1.5× the message size limit, as /healthz says them. */
  storage: { warnings: string[] };
  /** Oldest first; the last entry is today. */
  receivedPerDay: { day: string; received: number }[];
  totals: { today: PeriodTotals; last30Days: PeriodTotals };
  categories: CategoryCount[];
  /** Delivery outcomes per kind, rule and category (today and the last 30 days), busiest first. */
  deliveriesByRule: DeliveryRuleCount[];
  queue: { depth: Record<QueueState, number>; oldestDeferredAgeSeconds: number | null };
  failedDeliveries: FailedDelivery[];
}

export const RELAY_MISSING_WARNING = "no relay configured (RELAY_SMTP_HOST): forward deliveries are held in the queue";

/**
 * The relay failed itself and is suspended (queue/relay-suspension.ts). Without its reason: this
 * is also /healthz's warning, which is unauthenticated (/stats and the log say why).
 */
export function relaySuspendedWarning(since: number): string {
  return `relay suspended since ${new Date(since).toISOString()}: it failed (connection, TLS or login), forwards wait for it to answer a probe (/stats or the log say why)`;
}

/** `hostname` is SMTP_HOSTNAME, shown in the page title. */
export function collectStats(db: Database, status: StatusSource, now: number, hostname: string): StatsSnapshot {
  const today = dayKey(now);
  const firstDay = dayKey(now - (CHART_DAYS - 1) * DAY_MS);
  // Up to today only: days after it were counted by a clock that was ahead (a wrong RTC at boot,
  // before NTP); the chart stops at today, and the last 30 days' totals must not count them.
  const rows = periodRows(db, firstDay, today);
  const rules = status.rules();
  const relay = status.relay();
  return {
    generatedAt: new Date(now).toISOString(),
    version: VERSION_STRING,
    startedAt: new Date(status.startedAt).toISOString(),
    uptimeSeconds: uptimeSeconds(status, now),
    today,
    smtp: { hostname, listening: status.smtpListening(), tls: status.smtpTls() },
    relay: {
      ...relay,
      suspended: relay.suspended && { since: new Date(relay.suspended.since).toISOString(), until: new Date(relay.suspended.until).toISOString(), reason: relay.suspended.reason },
      warning: !relay.configured ? RELAY_MISSING_WARNING : relay.suspended ? relaySuspendedWarning(relay.suspended.since) : null,
    },
    rules: {
      version: rules.version,
      loadedAt: isoOrNull(rules.loadedAt),
      lastError: rules.lastError,
      lastErrorAt: isoOrNull(rules.lastErrorAt),
      reloads: { ...rules.reloads },
    },
    storage: { warnings: status.diskWarnings?.() ?? [] },
    receivedPerDay: receivedPerDay(db, firstDay, today, now),
    totals: { today: periodTotals(rows.filter((r) => r.day === today)), last30Days: periodTotals(rows) },
    categories: categoryCounts(rows, today),
    deliveriesByRule: deliveriesByRule(rows, today),
    queue: queueFigures(db, now),
    failedDeliveries: failedDeliveries(db, status.queueCommandArgs ?? ""),
  };
}

interface CounterRow {
  day: string;
  metric: string;
  rule: string;
  category: string;
  n: number;
}

function isoOrNull(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/**
 * The period's counters summed in SQL per (metric, rule, category), as at most two rows each: today's
 * (day = today) and the earlier days' (day = firstDay). Read one row per day × series, a year's
 * 300 rules gave 54,000 rows to build and walk in JS per request: ~140 ms of event loop (SMTP
 * included) per /stats, /stats.json and /metrics.
 */
function periodRows(db: Database, firstDay: string, today: string): CounterRow[] {
  const sums = db
    .query<{ metric: string; rule: string; category: string; n: number; today_n: number }, [string, string, string]>(
      `SELECT metric, rule, category, SUM(n) AS n, SUM(CASE WHEN day = ?1 THEN n ELSE 0 END) AS today_n
         FROM daily_counters WHERE day >= ?2 AND day <= ?3 GROUP BY metric, rule, category`,
    )
    .all(today, firstDay, today);
  const rows: CounterRow[] = [];
  for (const r of sums) {
    if (r.today_n !== 0) rows.push({ day: today, metric: r.metric, rule: r.rule, category: r.category, n: r.today_n });
    if (r.n !== r.today_n) rows.push({ day: firstDay, metric: r.metric, rule: r.rule, category: r.category, n: r.n - r.today_n });
  }
  return rows;
}

function receivedPerDay(db: Database, firstDay: string, today: string, now: number): { day: string; received: number }[] {
  const byDay = new Map<string, number>();
  const perDay = db
    .query<{ day: string; n: number }, [string, string]>(
      `SELECT day, SUM(n) AS n FROM daily_counters WHERE day >= ? AND day <= ? AND metric = 'received' GROUP BY day`,
    )
    .all(firstDay, today);
  for (const r of perDay) byDay.set(r.day, r.n);
  const days: { day: string; received: number }[] = [];
  for (let i = CHART_DAYS - 1; i >= 0; i--) {
    const day = dayKey(now - i * DAY_MS);
    days.push({ day, received: byDay.get(day) ?? 0 });
  }
  return days;
}

export function emptyActionCounts(): Record<Action, number> {
  return { reject: 0, archive: 0, forward: 0, webhook: 0, drop: 0 };
}

export function emptyDeliveryCounts(): Record<DeliveryKind, Record<DeliveryResult, number>> {
  return {
    forward: { delivered: 0, deferred: 0, failed: 0 },
    webhook: { delivered: 0, deferred: 0, failed: 0 },
  };
}

/** Sums counter rows (any period) into the figures the page shows. */
export function periodTotals(rows: readonly { metric: string; n: number }[]): PeriodTotals {
  const t: PeriodTotals = {
    received: 0,
    archived: 0,
    sessions: 0,
    tlsSessions: 0,
    tlsShare: null,
    byAction: emptyActionCounts(),
    refused: Object.fromEntries(REFUSAL_REASONS.map((r) => [r, 0])) as Record<RefusalReason, number>,
    deliveries: emptyDeliveryCounts(),
  };
  for (const r of rows) {
    const [head, tail] = splitMetric(r.metric);
    if (head === "received") t.received += r.n;
    else if (head === "archived") t.archived += r.n;
    else if (head === "session") t.sessions += r.n;
    else if (head === "session_tls") t.tlsSessions += r.n;
    else if (head === "action" && isAction(tail)) t.byAction[tail] += r.n;
    else if (head === "refused" && isRefusalReason(tail)) t.refused[tail] += r.n;
    else {
      const delivery = deliveryMetric(r.metric);
      if (delivery !== null) t.deliveries[delivery.kind][delivery.result] += r.n;
    }
  }
  t.tlsShare = t.sessions > 0 ? Math.min(1, t.tlsSessions / t.sessions) : null;
  return t;
}

/** Category counts come from the action:* counters: every classified message has one action. */
function categoryCounts(rows: CounterRow[], today: string): CategoryCount[] {
  const byCategory = new Map<string, CategoryCount>();
  for (const r of rows) {
    if (!r.metric.startsWith("action:")) continue;
    const category = r.category || "default";
    const c = byCategory.get(category) ?? { category, today: 0, last30Days: 0 };
    c.last30Days += r.n;
    if (r.day === today) c.today += r.n;
    byCategory.set(category, c);
  }
  return [...byCategory.values()].sort((a, b) => b.last30Days - a.last30Days || a.category.localeCompare(b.category));
}

function queueFigures(db: Database, now: number): StatsSnapshot["queue"] {
  const placeholders = QUEUE_STATES.map(() => "?").join(",");
  const rows = db
    .query<{ state: string; n: number; oldest: number | null }, string[]>(
      `SELECT state, COUNT(*) AS n, MIN(created_at) AS oldest FROM deliveries WHERE state IN (${placeholders}) GROUP BY state`,
    )
    .all(...QUEUE_STATES);
  const depth: Record<QueueState, number> = { queued: 0, deferred: 0, held: 0, delivering: 0, failed: 0 };
  let oldestDeferredAgeSeconds: number | null = null;
  for (const r of rows) {
    if (!isQueueState(r.state)) continue;
    depth[r.state] = r.n;
    if (r.state === "deferred" && r.oldest !== null) oldestDeferredAgeSeconds = Math.max(0, Math.floor((now - r.oldest) / 1000));
  }
  return { depth, oldestDeferredAgeSeconds };
}

interface FailedRow {
  id: number;
  message_id: string;
  kind: string;
  target: string;
  attempts: number;
  updated_at: number;
  last_error: string | null;
  subject: string | null;
  mail_from: string | null;
}

/** INDEXED BY: without statistics the planner took deliveries_due and sorted every failed row (migration 9). */
function failedDeliveries(db: Database, queueArgs: string): FailedDelivery[] {
  const rows = db
    .query<FailedRow, [number]>(
      `SELECT d.id, d.message_id, d.kind, d.target, d.attempts, d.updated_at, d.last_error, m.subject, m.mail_from
         FROM deliveries d INDEXED BY deliveries_failed_latest LEFT JOIN messages m ON m.id = d.message_id
        WHERE d.state = 'failed' ORDER BY d.updated_at DESC, d.id DESC LIMIT ?`,
    )
    .all(FAILED_SHOWN);
  return rows.map((r) => ({
    id: r.id,
    messageId: r.message_id,
    kind: r.kind === "webhook" ? "webhook" : "forward",
    target: displayTarget(r.kind, r.target),
    attempts: r.attempts,
    failedAt: new Date(r.updated_at).toISOString(),
    lastError: r.last_error,
    subject: r.subject,
    mailFrom: r.mail_from,
    retryCommand: retryCommand(r.id, queueArgs),
  }));
}

/**
 * The command an admin runs to put this one failed delivery back in the queue (`queue retry` takes a
 * delivery number or a message id), with what finds serve's queue from any directory (StatusSource.queueCommandArgs).
 */
export function retryCommand(deliveryId: number, queueArgs = ""): string {
  return `mailgw queue retry ${deliveryId}${queueArgs}`;
}

/** Forward targets are a JSON array of addresses; webhook URLs lose credentials and query (they may hold secrets). */
export function displayTarget(kind: string, target: string): string {
  if (kind === "webhook") return URL.canParse(target) ? shownWebhookUrl(target) : "(invalid URL)";
  try {
    const parsed: unknown = JSON.parse(target);
    if (Array.isArray(parsed)) return parsed.map(String).join(", ");
  } catch {
    // Not JSON: show it as stored.
  }
  return target;
}

function splitMetric(metric: string): [string, string] {
  const i = metric.indexOf(":");
  return i < 0 ? [metric, ""] : [metric.slice(0, i), metric.slice(i + 1)];
}

function isAction(s: string): s is Action {
  return (ACTIONS as readonly string[]).includes(s);
}
function isQueueState(s: string): s is QueueState {
  return (QUEUE_STATES as readonly string[]).includes(s);
}
