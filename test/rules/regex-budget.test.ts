/**
 * Catastrophic regexes (ReDoS): `rules lint` warns about a group repeated over a body that
 * repeats (rules/regex-risk.ts), and classify stops running regexes on a message once they
 * have taken REGEX_BUDGET_MS, so one hostile message cannot hold the event loop for minutes
 * (1000 attachment names × about a second each against `^(a+)+$`).
 */
import { describe, expect, test } from "bun:test";
import { classify } from "../../src/rules/classify.ts";
import { parseRules } from "../../src/rules/load.ts";
import { REGEX_BUDGET_MS } from "../../src/rules/matchers.ts";
import { nestedRepetition } from "../../src/rules/regex-risk.ts";
import type { RuleSet } from "../../src/rules/types.ts";
import { makeFacts } from "../helpers/facts.ts";

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - name: slow-names
    priority: 10
    action: reject
    conditions:
      - { field: attachment, operator: regex, value: '^(a+)+$' }
  - name: later-regex
    priority: 5
    action: drop
    conditions:
      - { field: subject, operator: regex, value: '^hel+o$' }
  - name: plain
    priority: 1
    action: forward
    forward_to: ops@example.org
    conditions:
      - { field: subject, operator: contains, value: hello }
`;

function compile(text: string): { rules: RuleSet; warnings: string[] } {
  const result = parseRules(text, "rules.yaml", { loadedAt: new Date(0) });
  if (!result.ok) throw new Error(result.diagnostics.map((d) => d.message).join("\n"));
  return { rules: result.rules, warnings: result.diagnostics.filter((d) => d.severity === "warning").map((d) => `${d.line}:${d.code}`) };
}

describe("nested repetition (lint's slow-regex warning)", () => {
  test.each([
    ["(a+)+$", "(a+)+"],
    ["^(\\w+\\s?)*$", "(\\w+\\s?)*"],
    ["(?:x+x+)+y", "(?:x+x+)+"],
    ["(a+|b)*", "(a+|b)*"],
    ["((a+))+", "((a+))+"],
    ["(\\d{1,3})+$", "(\\d{1,3})+"],
  ])("%s is reported as %s", (source, nested) => {
    expect(nestedRepetition(source)).toBe(nested);
  });

  test.each(["(\\w+\\.)+com", "^([a-z0-9-]+\\.)+example\\.com$", "(\\d{1,3}\\.){3}\\d{1,3}", "^\\[SPAM\\]", ".*", "[(a+)+]", "\\(a+\\)+", "(?=a+)+", "(\\s*,\\s*)+"])(
    "%s is not reported",
    (source) => {
      expect(nestedRepetition(source)).toBeNull();
    },
  );

  test("lint warns (slow-regex) on the line of the regex, and only there", () => {
    expect(compile(RULES).warnings).toEqual(["8:slow-regex"]);
  });
});

describe("per-message regex budget", () => {
  test("a message whose attachment names make a regex backtrack is classified within the budget; later regex rules are skipped, others still decide", () => {
    const { rules } = compile(RULES);
    const facts = makeFacts({ subject: "hello", attachments: Array.from({ length: 200 }, () => `${"a".repeat(40)}!`) });
    const started = performance.now();
    const result = classify(facts, rules, { trace: false });
    const elapsed = performance.now() - started;
    // Without the budget: 200 values × ~1 s each. With it: the budget plus the one call in flight.
    expect(elapsed).toBeLessThan(REGEX_BUDGET_MS + 5000);
    expect(result.unevaluated).toEqual(["slow-names", "later-regex"]);
    // later-regex would match "hello" but was not evaluated; the plain rule decides.
    expect(result.decision.rule).toBe("plain");
  }, 60_000);

  test("the trace (mailgw test) says the same: the rule did not match and is listed", () => {
    const { rules } = compile(RULES);
    const facts = makeFacts({ subject: "hello", attachments: Array.from({ length: 200 }, () => `${"a".repeat(40)}!`) });
    const result = classify(facts, rules);
    expect(result.trace.map((t) => [t.rule, t.matched])).toEqual([["slow-names", false], ["later-regex", false], ["plain", true]]);
    expect(result.unevaluated).toEqual(["slow-names", "later-regex"]);
  }, 60_000);

  test("a slow regex behind a condition that already failed: the trace (mailgw test) decides as serve, which never runs it", () => {
    const { rules } = compile(`domains: [company.com]
rules:
  - { name: slow-behind, priority: 10, action: reject, conditions: [{ field: subject, operator: equals, value: never }, { field: body, operator: regex, value: '^(a+)+$' }] }
  - { name: hello, priority: 5, action: drop, conditions: [{ field: subject, operator: regex, value: '^hello' }] }
`);
    const facts = makeFacts({ subject: "hello", body: `${"a".repeat(32)}!` });
    const served = classify(facts, rules, { trace: false });
    const dryRun = classify(facts, rules);
    expect(served.decision.rule).toBe("hello");
    expect(dryRun.decision.rule).toBe("hello");
    expect(dryRun.unevaluated).toBeUndefined();
    expect(dryRun.trace.map((t) => [t.rule, t.matched])).toEqual([["slow-behind", false], ["hello", true]]);
  }, 60_000);

  test("an ordinary message has no unevaluated rules", () => {
    const { rules } = compile(RULES);
    const result = classify(makeFacts({ subject: "hello", attachments: ["invoice.pdf"] }), rules, { trace: false });
    expect(result.unevaluated).toBeUndefined();
    expect(result.decision.rule).toBe("later-regex");
  });
});
