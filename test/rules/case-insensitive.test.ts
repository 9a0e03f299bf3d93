/**
 * What the README's "Operators" says the case-insensitive operators, sizes and the From fields
 * mean, example by example, on the traced and the untraced (serve) path alike.
 */
import { describe, expect, test } from "bun:test";
import { classify } from "../../src/rules/classify.ts";
import { parseRules } from "../../src/rules/load.ts";
import { type FactsInput, makeFacts } from "../helpers/facts.ts";

function matches(condition: string, input: FactsInput): boolean {
  const yaml = ["domains: [company.com]", "rules:", "  - name: r", "    action: drop", "    conditions:", `      - ${condition}`, ""].join("\n");
  const result = parseRules(yaml, "test.yaml", { loadedAt: new Date(0) });
  if (!result.ok) throw new Error(result.diagnostics.map((d) => d.message).join("\n"));
  const facts = makeFacts(input);
  const traced = classify(facts, result.rules).decision.rule === "r";
  expect(classify(facts, result.rules, { trace: false }).decision.rule === "r").toBe(traced);
  return traced;
}

const subject = (value: string, text: string, operator = "contains"): boolean => matches(`{ field: subject, operator: ${operator}, value: "${value}" }`, { subject: text });

describe("case-insensitive: each letter lower-cased on its own", () => {
  test("no letter stands for two", () => {
    expect(subject("straße", "STRASSE")).toBe(false);
    expect(subject("straße", "STRAẞE")).toBe(true);
    expect(matches(`{ field: attachment, operator: contains, value: FILE }`, { attachments: ["ﬁle.pdf"] })).toBe(false);
  });

  test("Turkish dotted and dotless i", () => {
    expect(subject("ı", "I", "equals")).toBe(false);
    expect(subject("istanbul", "İSTANBUL")).toBe(false);
    expect(subject("stanbul", "İSTANBUL")).toBe(true);
    expect(subject("İstanbul", "İSTANBUL", "equals")).toBe(true);
  });

  test("full-width letters match their own other case only", () => {
    expect(subject("ＡＢＣ", "ａｂｃ", "equals")).toBe(true);
    expect(subject("ＡＢＣ", "abc", "equals")).toBe(false);
  });

  test("a regex with the default i flag: ß is not SS, and ẞ only with flags: iu", () => {
    expect(matches(`{ field: subject, operator: regex, value: straße }`, { subject: "STRASSE" })).toBe(false);
    expect(matches(`{ field: subject, operator: regex, value: straße }`, { subject: "STRAẞE" })).toBe(false);
    expect(matches(`{ field: subject, operator: regex, value: straße, flags: iu }`, { subject: "STRAẞE" })).toBe(true);
    expect(matches(`{ field: subject, operator: regex, value: ΠΡΟΣ }`, { subject: "προσφορα" })).toBe(true);
  });
});

describe("sizes and the From fields", () => {
  test("KB, MB and GB are 1024-based", () => {
    expect(matches(`{ field: size, operator: gt, value: 10MB }`, { size: 10_485_760 })).toBe(false);
    expect(matches(`{ field: size, operator: gt, value: 10MB }`, { size: 10_485_761 })).toBe(true);
    expect(matches(`{ field: size, operator: lt, value: 1KB }`, { size: 1023 })).toBe(true);
    expect(matches(`{ field: size, operator: lt, value: 1KB }`, { size: 1024 })).toBe(false);
  });

  test("a message with no From: has no from or from_name value at all", () => {
    expect(matches(`{ field: from, operator: regex, value: '^$' }`, {})).toBe(false);
    expect(matches(`{ field: from_name, operator: regex, value: '^$' }`, { from: "a@example.org" })).toBe(false);
    expect(matches(`{ field: from, operator: contains, value: x, not: true }`, {})).toBe(true);
    expect(matches(`{ field: from, operator: exists, not: true }`, {})).toBe(true);
  });
});
