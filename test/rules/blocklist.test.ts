/**
 * Blocklists written as `match: any` rules of thousands of `equals` conditions (the only way
 * rules.yaml has to list values): the untraced classification serve runs gives exactly the
 * decisions of the traced one (every condition evaluated), and costs a Set lookup, not one
 * comparison per listed address, on every message.
 */
import { describe, expect, test } from "bun:test";
import { classify } from "../../src/rules/classify.ts";
import { parseRules } from "../../src/rules/load.ts";
import type { RuleSet } from "../../src/rules/types.ts";
import { type FactsInput, makeFacts } from "../helpers/facts.ts";

function compile(text: string): RuleSet {
  const result = parseRules(text, "test.yaml", { loadedAt: new Date(0) });
  if (!result.ok) throw new Error(result.diagnostics.map((d) => `${d.line}:${d.col} ${d.message}`).join("\n"));
  return result.rules;
}

function rule(name: string, conditions: string[]): string {
  return `  - name: ${name}\n    action: reject\n    match: any\n    conditions:\n${conditions.map((c) => `      - ${c}\n`).join("")}`;
}

const BLOCKED = 10_000;
const senders = Array.from({ length: BLOCKED }, (_, i) => `{ field: mail_from, operator: equals, value: "Spammer${i}@Bad${i % 97}.example" }`);
const RULES = compile(
  "domains: [company.com]\nrules:\n" +
    // 256 conditions per rule at most: a 10,000-address blocklist is 40 rules.
    Array.from({ length: Math.ceil(BLOCKED / 256) }, (_, r) => rule(`blocked-${r}`, senders.slice(r * 256, (r + 1) * 256))).join("") +
    rule("mixed", [
      "{ field: rcpt, operator: equals, value: abuse@company.com }",
      "{ field: rcpt, operator: equals, value: postmaster@company.com }",
      "{ field: rcpt, operator: equals, value: info@bücher.example }",
      "{ field: rcpt, operator: equals, value: hostmaster@company.com }",
      "{ field: rcpt, operator: equals, value: ceo@company.com, not: true }",
      "{ field: subject, operator: equals, value: WIN }",
      "{ field: subject, operator: contains, value: lottery }",
      "{ field: subject, operator: equals, value: PRIZE }",
      "{ field: client_ip, operator: equals, value: 192.0.2.66 }",
      "{ field: header:X-Campaign, operator: equals, value: Spring }",
      "{ field: header:X-Campaign, operator: equals, value: SUMMER }",
      "{ field: header:X-Campaign, operator: equals, value: Autumn }",
      "{ field: header:X-Campaign, operator: equals, value: WINTER }",
    ]),
);

const CASES: [string, FactsInput, string | null][] = [
  ["a listed sender, other case", { mailFrom: "SPAMMER4242@bad71.EXAMPLE", rcpt: ["ceo@company.com"] }, "blocked-16"],
  ["the last listed sender", { mailFrom: `spammer${BLOCKED - 1}@bad${(BLOCKED - 1) % 97}.example`, rcpt: ["ceo@company.com"] }, `blocked-${Math.floor((BLOCKED - 1) / 256)}`],
  ["a sender not listed (suffix)", { mailFrom: "xspammer1@bad1.example", rcpt: ["ceo@company.com"] }, null],
  ["a sender not listed (other domain)", { mailFrom: "spammer1@bad2.example", rcpt: ["ceo@company.com"] }, null],
  ["a listed recipient among others", { rcpt: ["ceo@company.com", "Postmaster@Company.com"] }, "mixed"],
  ["an IDN recipient in ASCII form", { rcpt: ["ceo@company.com", "info@xn--bcher-kva.example"] }, "mixed"],
  ["not: true still applies", { rcpt: ["someone@company.com"] }, "mixed"],
  ["subject equals, other case", { subject: "prize", rcpt: ["ceo@company.com"] }, "mixed"],
  ["subject contains", { subject: "your lottery win", rcpt: ["ceo@company.com"] }, "mixed"],
  ["client address", { clientIp: "192.0.2.66", rcpt: ["ceo@company.com"] }, "mixed"],
  // The rule writes it WINTER, the message Winter: equals ignores case on the Set path too.
  ["a header value", { headers: { "X-Campaign": ["x", "Winter"] }, rcpt: ["ceo@company.com"] }, "mixed"],
  ["nothing listed", { subject: "hello", mailFrom: "friend@example.org", headers: { "X-Campaign": "fall" }, rcpt: ["ceo@company.com"] }, null],
];

describe("blocklist rules", () => {
  for (const [name, input, expected] of CASES) {
    test(`${name} → ${expected ?? "default"}, traced and untraced alike`, () => {
      const facts = makeFacts(input);
      expect(classify(facts, RULES, { trace: false }).decision.rule).toBe(expected);
      expect(classify(facts, RULES).decision.rule).toBe(expected);
    });
  }

  // Speed is measured in bench/, not asserted here: what is checked is the shape serve evaluates.
  test("each blocklist rule runs as one Set lookup, not one comparison per listed address; the mixed rule keeps its order", () => {
    const blocked = RULES.rules.filter((r) => r.name.startsWith("blocked-"));
    expect(blocked).toHaveLength(Math.ceil(BLOCKED / 256));
    for (const r of blocked) expect(r.checks).toHaveLength(1);
    const mixed = RULES.rules.find((r) => r.name === "mixed");
    // rcpt ×4 merged; then not, subject equals, contains, equals, client_ip one each; header ×4 merged.
    expect(mixed?.checks).toHaveLength(7);
    expect(mixed?.conditions).toHaveLength(13);
  });
});
