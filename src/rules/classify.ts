/**
 * classify: message facts + compiled rules → decision (+ trace). Runs for every SMTP
 * message during DATA, so it is pure (no fs, no clock) and cheap: rules are already in
 * evaluation order, regexes and CIDRs precompiled, expected text lower-cased; per message
 * it allocates one scope and lower-cases each field a condition compares at most once.
 * First matching rule wins; no match → the rule set's default decision. Returned
 * decisions are frozen objects shared between calls. Never throws for any facts.
 */
import type {
  ClassifyOptions,
  ClassifyResult,
  CompiledCondition,
  CompiledRule,
  ConditionTrace,
  EvalScope,
  MessageFacts,
  RuleSet,
  RuleTrace,
} from "./types.ts";

function newScope(facts: MessageFacts, slotCount: number): EvalScope {
  return { facts, lowered: new Array<string | readonly string[] | undefined>(slotCount), clientIp: undefined };
}

function conditionHolds(condition: CompiledCondition, scope: EvalScope): boolean {
  return condition.test(scope) !== condition.negate;
}

/** Short-circuit evaluation for the hot path. */
function ruleMatches(rule: CompiledRule, scope: EvalScope): boolean {
  const conditions = rule.conditions;
  if (rule.match === "any") {
    for (let i = 0; i < conditions.length; i++) if (conditionHolds(conditions[i] as CompiledCondition, scope)) return true;
    return false;
  }
  for (let i = 0; i < conditions.length; i++) if (!conditionHolds(conditions[i] as CompiledCondition, scope)) return false;
  return true;
}

/** Evaluates every condition (no short-circuit) so the trace shows all of them. */
function traceRule(rule: CompiledRule, scope: EvalScope): RuleTrace {
  const conditions: ConditionTrace[] = rule.conditions.map((condition) => ({
    field: condition.field,
    operator: condition.operator,
    not: condition.negate,
    expected: condition.expected,
    actual: condition.actual(scope.facts),
    matched: conditionHolds(condition, scope),
  }));
  const matched = rule.match === "any" ? conditions.some((c) => c.matched) : conditions.every((c) => c.matched);
  return { rule: rule.name, priority: rule.priority, match: rule.match, matched, conditions };
}

export function classify(facts: MessageFacts, rules: RuleSet, options?: ClassifyOptions): ClassifyResult {
  const scope = newScope(facts, rules.slotCount);
  const list = rules.rules;
  if (options?.trace === false) {
    for (let i = 0; i < list.length; i++) {
      const rule = list[i] as CompiledRule;
      if (ruleMatches(rule, scope)) return { decision: rule.decision, trace: [] };
    }
    return { decision: rules.default, trace: [] };
  }
  const trace: RuleTrace[] = [];
  for (const rule of list) {
    const entry = traceRule(rule, scope);
    trace.push(entry);
    if (entry.matched) return { decision: rule.decision, trace };
  }
  return { decision: rules.default, trace };
}
