/**
 * classify: message facts + compiled rules → decision (+ trace). Runs for every SMTP
 * message during DATA, so it is pure (no fs, no clock) and cheap: rules are already in
 * evaluation order, regexes and CIDRs precompiled, expected text lower-cased; per message
 * it allocates one scope and lower-cases each field a condition compares at most once.
 * First matching rule wins; no match → the rule set's default decision. Returned
 * decisions are frozen objects shared between calls. Never throws for any facts.
 * Regexes share a per-message time budget (REGEX_BUDGET_MS): a rule whose regex condition
 * finds it used up does not match, and is named in `unevaluated`.
 */
import type {
  ClassifyOptions,
  ClassifyResult,
  CompiledRule,
  ConditionTrace,
  EvalScope,
  MessageFacts,
  RuleCheck,
  RuleSet,
  RuleTrace,
} from "./types.ts";
import { RegexBudgetExceeded } from "./matchers.ts";

function newScope(facts: MessageFacts, slotCount: number): EvalScope {
  return { facts, lowered: new Array<string | readonly string[] | undefined>(slotCount), clientIp: undefined, regexMs: 0 };
}

function conditionHolds(condition: RuleCheck, scope: EvalScope): boolean {
  return condition.test(scope) !== condition.negate;
}

/** Short-circuit evaluation for the hot path, over the rule's checks (equals runs merged). */
function ruleMatches(rule: CompiledRule, scope: EvalScope): boolean {
  const checks = rule.checks;
  if (rule.match === "any") {
    for (let i = 0; i < checks.length; i++) if (conditionHolds(checks[i] as RuleCheck, scope)) return true;
    return false;
  }
  for (let i = 0; i < checks.length; i++) if (!conditionHolds(checks[i] as RuleCheck, scope)) return false;
  return true;
}

/** ruleMatches, or null when a regex condition found the message's regex budget used up. */
function ruleMatchesWithinBudget(rule: CompiledRule, scope: EvalScope): boolean | null {
  try {
    return ruleMatches(rule, scope);
  } catch (err) {
    if (err instanceof RegexBudgetExceeded) return null;
    throw err;
  }
}

/**
 * The rule's decision exactly as the SMTP path takes it (ruleMatchesWithinBudget: short-circuit,
 * charging the message's regex budget as serve does), then every condition evaluated for the
 * trace with the budget put back as it was before and after: charged for conditions serve never
 * runs, a slow regex past a failed condition used up the budget, and `mailgw test` then skipped a
 * later regex rule that serve matched (another decision than serve's). A rule with a condition
 * the budget left unevaluated does not match (`unevaluated` is true).
 */
function traceRule(rule: CompiledRule, scope: EvalScope): RuleTrace & { unevaluated: boolean } {
  const before = scope.regexMs;
  const decided = ruleMatchesWithinBudget(rule, scope);
  const after = scope.regexMs;
  scope.regexMs = before;
  const conditions: ConditionTrace[] = rule.conditions.map((condition) => {
    let matched = false;
    try {
      matched = conditionHolds(condition, scope);
    } catch (err) {
      if (!(err instanceof RegexBudgetExceeded)) throw err;
    }
    return { field: condition.field, operator: condition.operator, not: condition.negate, expected: condition.expected, actual: condition.actual(scope.facts), matched };
  });
  scope.regexMs = after;
  return { rule: rule.name, priority: rule.priority, match: rule.match, matched: decided === true, conditions, unevaluated: decided === null };
}

export function classify(facts: MessageFacts, rules: RuleSet, options?: ClassifyOptions): ClassifyResult {
  const scope = newScope(facts, rules.slotCount);
  const list = rules.rules;
  const unevaluated: string[] = [];
  const result = (decision: ClassifyResult["decision"], trace: RuleTrace[]): ClassifyResult =>
    unevaluated.length > 0 ? { decision, trace, unevaluated } : { decision, trace };
  if (options?.trace === false) {
    for (let i = 0; i < list.length; i++) {
      const rule = list[i] as CompiledRule;
      const matched = ruleMatchesWithinBudget(rule, scope);
      if (matched === null) unevaluated.push(rule.name);
      else if (matched) return result(rule.decision, []);
    }
    return result(rules.default, []);
  }
  const trace: RuleTrace[] = [];
  for (const rule of list) {
    const { unevaluated: skipped, ...entry } = traceRule(rule, scope);
    trace.push(entry);
    if (skipped) unevaluated.push(rule.name);
    if (entry.matched) return result(rule.decision, trace);
  }
  return result(rules.default, trace);
}
