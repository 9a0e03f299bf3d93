/**
 * GET /metrics: Prometheus text exposition format 0.0.4. Counters, the delivery duration
 * histogram included, are all-time sums of daily_counters, kept in counter_totals (they survive restarts, `queue drop`
 * and archive retention), never exported lower than before by this process (CounterFloor);
 * mailgw_rules_reload_total alone counts since start. Gauges come from the same snapshot as
 * the stats page.
 * Trusts: nothing in label values — categories are user-chosen strings and are escaped.
 * Failure: a database error propagates; the server answers 500 and Prometheus marks the
 * scrape as failed (better than a partial exposition).
 */
import type { Database } from "bun:sqlite";
import { ACTIONS, DELIVERY_KINDS, QUEUE_STATES, periodTotals, type StatsSnapshot } from "./stats-data.ts";
import { DURATION_BUCKETS_SECONDS, durationHistogram } from "../store/delivery-durations.ts";
import { deliveryMetric } from "./deliveries-by-rule.ts";
import { escapePromLabel } from "./escape.ts";

export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Record<string, string>;
type MetricType = "counter" | "gauge" | "histogram";

/**
 * The highest value each counter series was exported with by this process. The sums can go
 * down: the intake takes back its counts when a storage failure after the commit turns a
 * group's 250 into 451. Prometheus reads any decrease as a counter reset and adds the whole
 * total to `increase()`; exporting the highest value seen instead only holds the series until
 * the sums pass it again. The floor lives in this process: a restart before the sums pass it
 * again shows the taken-back counts as one reset (only ever after such a storage failure).
 */
export type CounterFloor = Map<string, number>;

class Exposition {
  private readonly lines: string[] = [];
  private type: MetricType = "gauge";

  constructor(private readonly floor: CounterFloor | null) {}

  family(name: string, type: MetricType, help: string): this {
    this.type = type;
    this.lines.push(`# HELP ${name} ${help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`, `# TYPE ${name} ${type}`);
    return this;
  }

  sample(name: string, labels: Labels, value: number): this {
    const pairs = Object.entries(labels).map(([k, v]) => `${k}="${escapePromLabel(v)}"`);
    const series = `${name}${pairs.length ? `{${pairs.join(",")}}` : ""}`;
    let v = value;
    if (this.type === "counter" && this.floor) {
      v = Math.max(value, this.floor.get(series) ?? 0);
      this.floor.set(series, v);
    }
    this.lines.push(`${series} ${formatValue(v)}`);
    return this;
  }

  text(): string {
    return `${this.lines.join("\n")}\n`;
  }
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

type CounterRow = { metric: string; rule: string; category: string; n: number };

export function renderMetrics(db: Database, snapshot: StatsSnapshot, floor: CounterFloor | null = null): string {
  const counterRows = db
    // counter_totals, not a SUM over daily_counters: that read every row of every day (migration 8).
    .query<CounterRow, []>(`SELECT metric, rule, category, n FROM counter_totals ORDER BY metric, rule, category`)
    .all();
  const out = new Exposition(floor);

  out.family("mailgw_build_info", "gauge", "Build information; the value is always 1.").sample("mailgw_build_info", { version: snapshot.version }, 1);
  out.family("mailgw_uptime_seconds", "gauge", "Seconds since this gateway process started.").sample("mailgw_uptime_seconds", {}, snapshot.uptimeSeconds);
  sampleTraffic(out, counterRows);
  sampleQueue(out, snapshot);
  sampleDurations(out, counterRows);
  sampleRules(out, snapshot);
  sampleServices(out, snapshot);
  return out.text();
}

/** The all-time counters of daily_counters: messages, sessions, delivery outcomes. */
function sampleTraffic(out: Exposition, counterRows: readonly CounterRow[]): void {
  const all = periodTotals(counterRows);
  out.family("mailgw_messages_received_total", "counter", "Messages received to the end of DATA and classified (those a rule rejected included; refused for size or a mail loop: mailgw_smtp_refusals_total).");
  out.sample("mailgw_messages_received_total", {}, all.received);

  out.family("mailgw_messages_archived_total", "counter", "Messages with a copy written to the archive: the archive action and forward/webhook rules with archive: true (mailgw_messages_total{action=\"archive\"} counts the first only).");
  out.sample("mailgw_messages_archived_total", {}, all.archived);

  out.family("mailgw_messages_total", "counter", "Classified messages by action and category.");
  for (const { action, category, n } of messagesByActionCategory(counterRows)) {
    out.sample("mailgw_messages_total", { action, category }, n);
  }

  out.family("mailgw_smtp_sessions_total", "counter", "SMTP sessions, by whether they used TLS.");
  out.sample("mailgw_smtp_sessions_total", { tls: "true" }, all.tlsSessions);
  out.sample("mailgw_smtp_sessions_total", { tls: "false" }, Math.max(0, all.sessions - all.tlsSessions));

  out.family("mailgw_smtp_refusals_total", "counter", "Commands and connections the gateway itself refused (not a rule's reject), by reason.");
  for (const [reason, n] of Object.entries(all.refused)) out.sample("mailgw_smtp_refusals_total", { reason }, n);

  out.family("mailgw_deliveries_total", "counter", "Delivery attempt outcomes by kind (forward, webhook) and result.");
  for (const kind of DELIVERY_KINDS) {
    for (const [result, n] of Object.entries(all.deliveries[kind])) out.sample("mailgw_deliveries_total", { kind, result }, n);
  }

  out.family("mailgw_deliveries_by_rule_total", "counter", "Delivery attempt outcomes by kind, result, rule (\"\" = the default action) and category.");
  for (const r of counterRows) {
    const m = deliveryMetric(r.metric);
    if (m !== null) out.sample("mailgw_deliveries_by_rule_total", { kind: m.kind, result: m.result, rule: r.rule, category: r.category || "default" }, r.n);
  }
}

function sampleQueue(out: Exposition, snapshot: StatsSnapshot): void {
  out.family("mailgw_queue_depth", "gauge", "Deliveries in the queue by state (failed ones wait for `mailgw queue retry`).");
  for (const state of QUEUE_STATES) out.sample("mailgw_queue_depth", { state }, snapshot.queue.depth[state]);
  out.family("mailgw_queue_oldest_deferred_age_seconds", "gauge", "Age of the oldest deferred delivery; 0 when none is deferred.");
  out.sample("mailgw_queue_oldest_deferred_age_seconds", {}, snapshot.queue.oldestDeferredAgeSeconds ?? 0);
}

function sampleDurations(out: Exposition, counterRows: readonly CounterRow[]): void {
  out.family("mailgw_delivery_duration_seconds", "histogram", "Duration of delivery attempts (relay SMTP or webhook POST).");
  for (const kind of DELIVERY_KINDS) {
    const s = durationHistogram(counterRows, kind);
    DURATION_BUCKETS_SECONDS.forEach((le, i) => out.sample("mailgw_delivery_duration_seconds_bucket", { kind, le: String(le) }, s.buckets[i] ?? 0));
    out.sample("mailgw_delivery_duration_seconds_bucket", { kind, le: "+Inf" }, s.count);
    out.sample("mailgw_delivery_duration_seconds_sum", { kind }, s.sumSeconds);
    out.sample("mailgw_delivery_duration_seconds_count", { kind }, s.count);
  }
}

function sampleRules(out: Exposition, snapshot: StatsSnapshot): void {
  out.family("mailgw_rules_reload_total", "counter", "Rules file reloads since start (the initial load not counted), by result; a refused reload keeps the last good rules.");
  out.sample("mailgw_rules_reload_total", { result: "success" }, snapshot.rules.reloads.ok);
  out.sample("mailgw_rules_reload_total", { result: "failure" }, snapshot.rules.reloads.failed);
  out.family("mailgw_rules_last_reload_ok", "gauge", "1 when the last rules reload succeeded, 0 when it was refused.");
  out.sample("mailgw_rules_last_reload_ok", {}, snapshot.rules.lastError === null ? 1 : 0);
}

/** Whether the listener, the relay and its suspension are in a state to take mail. */
function sampleServices(out: Exposition, snapshot: StatsSnapshot): void {
  out.family("mailgw_smtp_listening", "gauge", "1 while the SMTP listener accepts connections.").sample("mailgw_smtp_listening", {}, snapshot.smtp.listening ? 1 : 0);
  out.family("mailgw_relay_configured", "gauge", "1 when a relay is configured; 0 means forwards are held.").sample("mailgw_relay_configured", {}, snapshot.relay.configured ? 1 : 0);
  // For an alert: forwards wait while this is 1 (the relay failed itself; see the log or /stats for why).
  out.family("mailgw_relay_suspended_since_seconds", "gauge", "Unix time the relay was suspended after failing itself (connection, TLS, login); 0 when it is not.")
    .sample("mailgw_relay_suspended_since_seconds", {}, snapshot.relay.suspended ? Math.floor(Date.parse(snapshot.relay.suspended.since) / 1000) : 0);
}

/** One sample per (action, category) seen, plus a zero sample per action never seen so every action has a series. */
function messagesByActionCategory(rows: readonly { metric: string; category: string; n: number }[]) {
  const byAction = new Map<string, Map<string, number>>(ACTIONS.map((a) => [a, new Map<string, number>()]));
  for (const r of rows) {
    if (!r.metric.startsWith("action:")) continue;
    const action = r.metric.slice("action:".length);
    const categories = byAction.get(action) ?? new Map<string, number>();
    const category = r.category || "default";
    categories.set(category, (categories.get(category) ?? 0) + r.n);
    byAction.set(action, categories);
  }
  const samples: { action: string; category: string; n: number }[] = [];
  for (const [action, categories] of byAction) {
    if (categories.size === 0) samples.push({ action, category: "default", n: 0 });
    for (const [category, n] of categories) samples.push({ action, category, n });
  }
  return samples;
}
