/**
 * Delivery outcomes per (kind, rule, category), from the `delivered|deferred|failed:<kind>`
 * counters the delivery worker bumps with the delivery's rule and category (issue 4: "by rule
 * and category, for the stats page"). One row per combination seen in the period, busiest
 * first: a mail admin looks here for the rule whose forwards keep failing.
 * Trusts: counter rows from store/counters.ts (rule '' = the default action, no rule).
 * Failure: none (pure).
 */
import type { DeliveryKind } from "../types.ts";

export type DeliveryResult = "delivered" | "deferred" | "failed";
export const DELIVERY_RESULTS: readonly DeliveryResult[] = ["delivered", "deferred", "failed"];

export interface DeliveryRuleCount {
  kind: DeliveryKind;
  /** The rule's name; "" when the default action applied. */
  rule: string;
  category: string;
  today: Record<DeliveryResult, number>;
  last30Days: Record<DeliveryResult, number>;
}

export interface RuleCounterRow {
  day: string;
  metric: string;
  rule: string;
  category: string;
  n: number;
}

function emptyResults(): Record<DeliveryResult, number> {
  return { delivered: 0, deferred: 0, failed: 0 };
}

/** `metric` as `<result>:<kind>`, or null when it is another counter. */
export function deliveryMetric(metric: string): { result: DeliveryResult; kind: DeliveryKind } | null {
  const [result, kind] = metric.split(":");
  if (!(DELIVERY_RESULTS as readonly string[]).includes(result ?? "")) return null;
  if (kind !== "forward" && kind !== "webhook") return null;
  return { result: result as DeliveryResult, kind };
}

export function deliveriesByRule(rows: readonly RuleCounterRow[], today: string): DeliveryRuleCount[] {
  const byKey = new Map<string, DeliveryRuleCount>();
  for (const r of rows) {
    const m = deliveryMetric(r.metric);
    if (m === null) continue;
    const category = r.category || "default";
    const key = JSON.stringify([m.kind, r.rule, category]);
    let c = byKey.get(key);
    if (c === undefined) {
      c = { kind: m.kind, rule: r.rule, category, today: emptyResults(), last30Days: emptyResults() };
      byKey.set(key, c);
    }
    c.last30Days[m.result] += r.n;
    if (r.day === today) c.today[m.result] += r.n;
  }
  const total = (c: DeliveryRuleCount): number => c.last30Days.delivered + c.last30Days.deferred + c.last30Days.failed;
  return [...byKey.values()].sort(
    (a, b) => total(b) - total(a) || a.kind.localeCompare(b.kind) || a.rule.localeCompare(b.rule) || a.category.localeCompare(b.category),
  );
}
