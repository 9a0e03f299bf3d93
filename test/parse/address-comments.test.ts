/**
 * A comment or folding whitespace inside an address (RFC 5322 CFWS: `<ceo@company.com (Chief)>`)
 * is not part of it: the rules see the address a mail client shows. Kept as written, the
 * comment let a message past a rule for ceo@company.com (found by comparing the corpus's facts
 * with Python's email package).
 */
import { expect, test } from "bun:test";
import { extractFacts } from "../../src/parse/extract.ts";
import { classify } from "../../src/rules/classify.ts";
import { parseRules } from "../../src/rules/load.ts";
import type { Envelope } from "../../src/types.ts";

const ENVELOPE: Envelope = { mailFrom: "x@example.org", rcptTo: ["sales@company.com"], clientIp: "192.0.2.1", helo: "mx.example.org", tls: false };

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: ceo-spoof, priority: 10, action: reject, category: spoof, conditions: [{ field: from, operator: equals, value: ceo@company.com }] }
  - { name: to-sales, priority: 5, action: drop, category: sales, conditions: [{ field: to, operator: equals, value: sales@company.com }] }
`;

function message(from: string, to: string): Uint8Array {
  return new TextEncoder().encode(`From: ${from}\r\nTo: ${to}\r\nSubject: hi\r\n\r\nbody\r\n`);
}

test("a comment inside From's or To's address does not hide it from a rule", async () => {
  const parsed = parseRules(RULES, "rules.yaml");
  if (!parsed.ok) throw new Error("rules did not compile");
  for (const from of ["CEO <ceo@company.com (Chief)>", "<ceo(x)@company.com>", "CEO <ceo @ company.com>", "ceo(x)@company.com"]) {
    const facts = await extractFacts(message(from, "Sales <sales(team)@company.com>"), ENVELOPE);
    expect({ from, address: facts.from }).toEqual({ from, address: "ceo@company.com" });
    expect(facts.to).toEqual(["sales@company.com"]);
    expect(classify(facts, parsed.rules).decision.rule).toBe("ceo-spoof");
  }
});
