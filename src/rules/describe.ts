/**
 * One-line descriptions of compiled rules for `mailgw rules list` and logs:
 * priority, name, action, category, targets, conditions — in evaluation order, with
 * the default decision last. Pure string building.
 */
import { shownWebhookUrl } from "../act/redact-url.ts";
import type { CompiledCondition, CompiledRule, Decision, RuleSet } from "./types.ts";

export function describeCondition(condition: CompiledCondition): string {
  const not = condition.negate ? "not " : "";
  if (condition.operator === "exists") return `${not}${condition.field} exists`;
  const expected = condition.operator === "regex" ? condition.expected : JSON.stringify(condition.expected);
  return `${not}${condition.field} ${condition.operator} ${expected}`;
}

export function describeTargets(decision: Decision): string {
  const targets: string[] = [];
  if (decision.action === "forward") targets.push(decision.forwardTo.join(","));
  // Redacted as in the logs: a token in the URL is the rules file's alone (README: Webhooks).
  if (decision.action === "webhook" && decision.url !== null) targets.push(shownWebhookUrl(decision.url));
  if (decision.action === "reject" && decision.rejectMessage !== null) targets.push(JSON.stringify(decision.rejectMessage));
  if (decision.archive && decision.action !== "archive") targets.push("+archive");
  return targets.length === 0 ? "-" : targets.join(" ");
}

export function describeConditions(rule: CompiledRule): string {
  return rule.conditions.map(describeCondition).join(rule.match === "any" ? " OR " : " AND ");
}

/** Rows: priority, name, action, category, targets, conditions. */
export function ruleRows(rules: RuleSet): string[][] {
  const rows = rules.rules.map((rule) => [
    String(rule.priority),
    rule.name,
    rule.action,
    rule.category,
    describeTargets(rule.decision),
    describeConditions(rule),
  ]);
  const fallback = rules.default;
  rows.push(["-", "(default)", fallback.action, fallback.category, describeTargets(fallback), "no rule matched"]);
  return rows;
}

/** Rows as aligned columns (the last column is not padded). */
export function alignColumns(rows: readonly string[][]): string {
  // Terminal columns, not UTF-16 units: a Korean category takes two columns a character.
  const width = (cell: string): number => Bun.stringWidth(cell);
  const pad = (cell: string, to: number, start: boolean): string => {
    const fill = " ".repeat(Math.max(0, to - width(cell)));
    return start ? fill + cell : cell + fill;
  };
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, width(cell))));
  const lines = rows.map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : pad(cell, widths[i] ?? 0, i === 0)))
      .join("  ")
      .trimEnd(),
  );
  return `${lines.join("\n")}\n`;
}
