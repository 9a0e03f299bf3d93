/**
 * Property test of the classifier: random rule sets (rule-generator.ts; every one accepted by the
 * same validation as `rules lint`) and random message facts, classified by mailgw and by a plain
 * reference written from SPEC §3 and the README (reference-classifier.ts). They must agree on the
 * decision (rule, action, category), on the rules tried and on each traced condition's result;
 * serve's untraced path (merged equals runs) must reach the same decision as the traced one, and
 * a condition compiled as always true (what lint's shadowed-rule warning relies on) must hold.
 *
 * Seeded (RULES_PROP_SEED=n to replay or explore another seed; the seed is in every failure) and
 * bounded: MAX_SETS rule sets, or TIME_BUDGET_MS, whichever comes first.
 */
import { describe, expect, test } from "bun:test";
import { classify } from "../../src/rules/classify.ts";
import { parseRules } from "../../src/rules/load.ts";
import type { RuleSet } from "../../src/rules/types.ts";
import type { MessageFacts } from "../../src/types.ts";
import { seeded } from "../helpers/seeded.ts";
import { referenceClassify, type RefRuleSet } from "./reference-classifier.ts";
import { randomFacts, randomRuleSet, toYaml } from "./rule-generator.ts";

const SEED = Number(process.env.RULES_PROP_SEED ?? 20_240_611);
/** Rule sets per run; each is tried on the 3 messages its values were drawn from and 2 others. */
const MAX_SETS = 1_200;
/** Stops early on a slow machine; the count of cases is checked to stay meaningful. */
const TIME_BUDGET_MS = 20_000;
const MIN_CASES = 1_000;
/** Generated sets lint refuses (a `\p{Lu}` under the default i) are skipped, but must stay few. */
const MAX_REFUSED_SHARE = 0.1;

function show(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (v instanceof Map ? Object.fromEntries(v) : v));
}

/** The first difference between mailgw and the reference on one message, or null. */
function difference(facts: MessageFacts, set: RefRuleSet, rules: RuleSet): string | null {
  const want = referenceClassify(facts, set);
  const got = classify(facts, rules);
  const hot = classify(facts, rules, { trace: false });
  const decision = (d: { rule: string | null; action: string; category: string }): string => `${d.rule ?? "(default)"} ${d.action} ${d.category}`;
  for (let i = 0; i < Math.max(want.trace.length, got.trace.length); i++) {
    const w = want.trace[i];
    const g = got.trace[i];
    if (w?.rule !== g?.rule) return `rule #${i} tried: mailgw ${g?.rule} reference ${w?.rule}`;
    const rule = set.rules.find((r) => r.name === w?.rule);
    for (let c = 0; c < (w?.conditions.length ?? 0); c++) {
      if (w?.conditions[c] !== g?.conditions[c]?.matched) {
        return `rule ${w?.rule} condition ${show(rule?.conditions[c])}: mailgw ${g?.conditions[c]?.matched} reference ${w?.conditions[c]} (actual ${show(g?.conditions[c]?.actual)})`;
      }
    }
  }
  // Lint's shadowed-rule warning trusts alwaysTrue; serve always has a client address for in_cidr.
  for (const traced of got.trace) {
    const conditions = rules.rules.find((r) => r.name === traced.rule)?.conditions ?? [];
    const wrong = conditions.findIndex((c, i) => c.alwaysTrue && traced.conditions[i]?.matched !== true && facts.clientIp !== "");
    if (wrong >= 0) return `rule ${traced.rule} condition ${wrong} is alwaysTrue but did not hold`;
  }
  if (decision(got.decision) !== decision(want.decision)) return `decision: mailgw ${decision(got.decision)} reference ${decision(want.decision)}`;
  if (decision(hot.decision) !== decision(got.decision)) return `untraced decision ${decision(hot.decision)}, traced ${decision(got.decision)}`;
  return null;
}

describe("classify agrees with a reference read from the README", () => {
  test(`random rule sets and messages (seed ${SEED})`, () => {
    const rng = seeded(SEED);
    const started = performance.now();
    let cases = 0;
    let refused = 0;
    let sets = 0;
    for (; sets < MAX_SETS && performance.now() - started < TIME_BUDGET_MS; sets++) {
      const pool = [randomFacts(rng), randomFacts(rng), randomFacts(rng)];
      const set = randomRuleSet(rng, pool);
      const yaml = toYaml(set);
      const parsed = parseRules(yaml, "generated.yaml", { loadedAt: new Date(0) });
      const extra = [randomFacts(rng), randomFacts(rng)];
      if (!parsed.ok) {
        refused++;
        continue;
      }
      for (const facts of [...pool, ...extra]) {
        cases++;
        const diff = difference(facts, set, parsed.rules);
        if (diff !== null) {
          throw new Error(`seed ${SEED}, rule set ${sets} (replay: RULES_PROP_SEED=${SEED}):\n${diff}\nfacts: ${show(facts)}\nrules:\n${yaml}`);
        }
      }
    }
    expect(cases).toBeGreaterThanOrEqual(MIN_CASES);
    expect(refused / sets).toBeLessThan(MAX_REFUSED_SHARE);
  }, 60_000);
});
