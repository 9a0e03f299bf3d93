/**
 * The checks `classify` runs for a rule when no trace is wanted (the SMTP path): the rule's
 * compiled conditions, except that in a `match: any` rule each run of consecutive plain
 * `equals` conditions on one field (a blocklist of senders, a list of VIPs) becomes one Set
 * lookup (equalsAnyTest). Only consecutive runs are merged, so the order in which the other
 * conditions run, and with it which regex meets a used-up regex budget, stays as written:
 * the result is the same as evaluating every condition. Traces still evaluate each condition.
 */
import { type ConditionSpec, equalsAnyTest, isPlainEquals, type SlotAllocator } from "./matchers.ts";
import type { CompiledCondition, MatchMode, RuleCheck } from "./types.ts";

/** Shorter runs gain nothing from a Set. */
const MIN_MERGED_RUN = 4;

export function ruleChecks(match: MatchMode, specs: readonly ConditionSpec[], compiled: readonly CompiledCondition[], slots: SlotAllocator): readonly RuleCheck[] {
  if (match !== "any") return compiled;
  const checks: RuleCheck[] = [];
  let i = 0;
  while (i < specs.length) {
    const spec = specs[i] as ConditionSpec;
    let end = i + 1;
    if (isPlainEquals(spec)) {
      while (end < specs.length && isPlainEquals(specs[end] as ConditionSpec) && (specs[end] as ConditionSpec).field === spec.field) end++;
    }
    if (end - i >= MIN_MERGED_RUN) checks.push({ test: equalsAnyTest(specs.slice(i, end), slots), negate: false });
    else checks.push(...compiled.slice(i, end));
    i = end;
  }
  return Object.freeze(checks);
}
