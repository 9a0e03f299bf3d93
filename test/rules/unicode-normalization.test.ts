/**
 * Rules compare text in Unicode normalization form C: the same characters written
 * precomposed (NFC: `견`, `ü`) and decomposed (NFD: Hangul jamo, `u` + U+0308, as macOS writes
 * file names and as text copied from them arrives) match each other, for the text operators,
 * the merged `equals` runs of a `match: any` rule and regexes, whichever side is decomposed.
 */
import { describe, expect, test } from "bun:test";
import { classify } from "../../src/rules/classify.ts";
import { parseRules } from "../../src/rules/load.ts";
import { type FactsInput, makeFacts } from "../helpers/facts.ts";

const nfd = (text: string): string => text.normalize("NFD");

function decided(conditions: string[], input: FactsInput, match = "all", trace = true): string | null {
  const yaml = ["domains: [company.com]", "rules:", "  - name: r", "    action: drop", `    match: ${match}`, "    conditions:", ...conditions.map((c) => `      - ${c}`), ""].join("\n");
  const result = parseRules(yaml, "test.yaml", { loadedAt: new Date(0) });
  if (!result.ok) throw new Error(result.diagnostics.map((d) => d.message).join("\n"));
  return classify(makeFacts(input), result.rules, { trace }).decision.rule;
}

describe("NFC and NFD forms of the same text match", () => {
  // Sanity: the forms differ as strings, so a plain comparison misses.
  test("the decomposed forms are other strings", () => {
    expect(nfd("견적서")).not.toBe("견적서");
    expect(nfd("データ")).not.toBe("データ");
    expect(nfd("josé")).not.toBe("josé");
  });

  test.each([
    ["subject contains, decomposed subject", `{ field: subject, operator: contains, value: 견적 }`, { subject: nfd("[요청] 견적서 송부") }],
    ["subject equals, decomposed rule value", `{ field: subject, operator: equals, value: "${nfd("Prüfung")}" }`, { subject: "PRÜFUNG" }],
    ["body contains Cyrillic ё", `{ field: body, operator: contains, value: счёт }`, { body: nfd("Ваш СЧЁТ готов") }],
    ["attachment from a Mac (Korean)", `{ field: attachment, operator: starts_with, value: 견적서 }`, { attachments: [nfd("견적서_2024.pdf")] }],
    ["attachment from a Mac (Japanese dakuten)", `{ field: attachment, operator: contains, value: データ }`, { attachments: [nfd("売上データ.xlsx")] }],
    ["from_name", `{ field: from_name, operator: equals, value: 박지훈 }`, { fromName: nfd("박지훈") }],
    ["header", `{ field: "header:X-Department", operator: equals, value: 영업부 }`, { headers: { "x-department": nfd("영업부") } }],
    ["rcpt with a decomposed local part", `{ field: rcpt, operator: equals, value: josé@company.com }`, { rcpt: [nfd("josé@company.com")] }],
    ["mail_from, decomposed rule value", `{ field: mail_from, operator: starts_with, value: "${nfd("jörg@")}" }`, { mailFrom: "jörg@example.de" }],
  ] as [string, string, FactsInput][])("%s", (_name, condition, input) => {
    expect(decided([condition], input)).toBe("r");
    expect(decided([condition], input, "all", false)).toBe("r");
  });

  test("regex: decomposed text, and a decomposed pattern", () => {
    expect(decided([`{ field: subject, operator: regex, value: '^\\[요청\\] 견적' }`], { subject: nfd("[요청] 견적서") })).toBe("r");
    expect(decided([`{ field: attachment, operator: regex, value: 'データ\\.xlsx$' }`], { attachments: [nfd("売上データ.xlsx")] })).toBe("r");
    expect(decided([`{ field: subject, operator: regex, value: '${nfd("^prüfung$")}' }`], { subject: "Prüfung" })).toBe("r");
    // The text operators keep their lower-cased value in the same field's slot: a regex on that
    // field in the same rule still sees the text as written (case-sensitive flags honoured).
    expect(decided([`{ field: subject, operator: contains, value: 견적 }`, `{ field: subject, operator: regex, value: '^Prüfung', flags: "" }`], { subject: nfd("Prüfung 견적") })).toBe("r");
    expect(decided([`{ field: subject, operator: contains, value: 견적 }`, `{ field: subject, operator: regex, value: '^prüfung', flags: "" }`], { subject: nfd("Prüfung 견적") })).toBeNull();
  });

  test("regex: the text as sent is tried too, so a pattern for combining marks still sees them", () => {
    // A check for stacked-mark text: NFC composes e + U+0301 into é, and the mark was gone.
    expect(decided([`{ field: subject, operator: regex, value: '[\\u0300-\\u036f]' }`], { subject: "Cafe\u0301 offer" })).toBe("r");
    expect(decided([`{ field: attachment, operator: regex, value: '[\\u0300-\\u036f]' }`], { attachments: ["a.pdf", "inv\u0301oice.pdf"] })).toBe("r");
    expect(decided([`{ field: subject, operator: regex, value: '[\\u0300-\\u036f]' }`], { subject: "Café offer" })).toBeNull();
    expect(decided([`{ field: subject, operator: regex, value: '[\\u0300-\\u036f]', not: true }`], { subject: "Cafe\u0301 offer" })).toBeNull();
  });

  test("a match: any run of equals (one Set lookup) compares in NFC too", () => {
    const conditions = ["견적", "請求書", "счёт", "Prüfung"].map((v) => `{ field: subject, operator: equals, value: ${v} }`);
    expect(decided(conditions, { subject: nfd("請求書") }, "any", false)).toBe("r");
    expect(decided(conditions, { subject: nfd("PRÜFUNG") }, "any", false)).toBe("r");
    expect(decided(conditions, { subject: "견적서" }, "any", false)).toBeNull();
  });

  test("not: true holds only when no form matches", () => {
    expect(decided([`{ field: attachment, operator: contains, value: 견적서, not: true }`], { attachments: [nfd("견적서.pdf")] })).toBeNull();
  });
});

describe("NFC of hostile text stays linear", () => {
  // ICU sorts a run of combining marks by class with a quadratic sort: one letter and 60,000
  // marks (230-class before 220-class) took 9 s of the thread serving every session.
  test("a body of 60,000 combining marks is compared in well under a second", () => {
    // (NFD sorts the same way: only the words are decomposed here.)
    const body = `${nfd("Ваш счёт готов")} a${"\u0301".repeat(30_000)}${"\u0316".repeat(30_000)}`;
    const started = performance.now();
    expect(decided([`{ field: body, operator: contains, value: счёт }`], { body }, "all", false)).toBe("r");
    expect(decided([`{ field: body, operator: regex, value: 'готов' }`], { body }, "all", false)).toBe("r");
    expect(performance.now() - started).toBeLessThan(1500);
  });
});
