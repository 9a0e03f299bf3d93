/**
 * Lint on regexes that silently failed on non-Latin text: `\p{…}` without the u flag (it
 * compiled, linted clean and matched the letters "p{…}", never Hangul) is compiled with the u
 * flag and warned about, and `\b` next to a non-ASCII letter is a warning (JavaScript's \b
 * knows ASCII word characters only).
 */
import { describe, expect, test } from "bun:test";
import { classify } from "../../src/rules/classify.ts";
import { parseRules } from "../../src/rules/load.ts";
import { asciiBoundaryNextToLetter, unicodeEscapeWithoutU } from "../../src/rules/regex-unicode.ts";
import { makeFacts } from "../helpers/facts.ts";

function lint(condition: string) {
  const yaml = `domains: [company.com]\nrules:\n  - name: r\n    action: drop\n    conditions:\n      - ${condition}\n`;
  return parseRules(yaml, "test.yaml", { loadedAt: new Date(0) });
}

describe("\\p{…} without the u flag", () => {
  test("is compiled with it, as meant, and a warning naming the fix, at the value", () => {
    const result = lint(`{ field: subject, operator: regex, value: '\\p{Script=Hangul}{2,}' }`);
    expect(result.ok).toBe(true);
    const d = result.diagnostics.find((x) => x.code === "unicode-escape-without-u");
    expect(d?.severity).toBe("warning");
    expect(d?.message).toContain("flags: iu");
    expect([d?.line, d?.col]).toEqual([6, 51]);
    if (!result.ok) return;
    expect(classify(makeFacts({ subject: "[요청] 견적서" }), result.rules).decision.rule).toBe("r");
    expect(classify(makeFacts({ subject: "p{Script=Hangul}" }), result.rules).decision.rule).toBeNull();
  });

  test.each([`'\\P{L}'`, `'[\\p{Script=Han}]'`, `'\\u{1F600}'`])("%s with the default flags or flags: i is taken with a warning", (value) => {
    for (const flags of ["", ", flags: i"]) {
      const result = lint(`{ field: subject, operator: regex, value: ${value}${flags} }`);
      expect(result.ok).toBe(true);
      expect(result.diagnostics.map((d) => d.code)).toContain("unicode-escape-without-u");
    }
  });

  test("a letter-case property with the default i flag is refused (it would match either case); with flags: iu written, a warning", () => {
    const refused = lint(`{ field: subject, operator: regex, value: '^[\\p{Lu}\\s]+$' }`);
    expect(refused.ok).toBe(false);
    expect(refused.diagnostics.find((d) => d.severity === "error")?.message).toContain("flags: u");
    const written = lint(`{ field: subject, operator: regex, value: '^[\\p{Lu}\\s]+$', flags: iu }`);
    expect(written.ok).toBe(true);
    expect(written.diagnostics.map((d) => d.code)).toContain("case-class-ignores-case");
    const exact = lint(`{ field: subject, operator: regex, value: '^[\\p{Lu}\\s]+$', flags: u }`);
    expect(exact.ok && exact.diagnostics.length).toBe(0);
    if (!exact.ok) return;
    expect(classify(makeFacts({ subject: "URGENT NOTICE" }), exact.rules).decision.rule).toBe("r");
    expect(classify(makeFacts({ subject: "urgent notice" }), exact.rules).decision.rule).toBeNull();
  });

  test("invalid with the u flag (an identity escape u refuses): an error saying so", () => {
    const result = lint(`{ field: subject, operator: regex, value: '\\p{Han}\\-x' }`);
    expect(result.ok).toBe(false);
    const d = result.diagnostics.find((x) => x.severity === "error");
    expect(d?.code).toBe("invalid-regex");
    expect(d?.message).toContain("with it the regex is invalid");
  });

  test("with u or v it compiles and matches Korean text", () => {
    const result = lint(`{ field: subject, operator: regex, value: '\\p{Script=Hangul}{2,}', flags: iu }`);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(classify(makeFacts({ subject: "[요청] 견적서" }), result.rules).decision.rule).toBe("r");
    expect(classify(makeFacts({ subject: "p{Script=Hangul}" }), result.rules).decision.rule).toBeNull();
    expect(lint(`{ field: subject, operator: regex, value: '\\p{L}', flags: v }`).ok).toBe(true);
  });

  test("an escaped backslash before p is no property escape", () => {
    expect(unicodeEscapeWithoutU("C:\\\\p{x}", "i")).toBeNull();
    expect(unicodeEscapeWithoutU("\\\\\\p{L}", "i")).toBe("\\p{");
    expect(unicodeEscapeWithoutU("\\p", "i")).toBeNull();
    expect(lint(`{ field: subject, operator: regex, value: '^\\[SPAM\\]' }`).ok).toBe(true);
  });
});

describe("\\b next to a non-ASCII letter", () => {
  test("is a warning; the file still loads", () => {
    const result = lint(`{ field: subject, operator: regex, value: '\\bсчёт\\b' }`);
    expect(result.ok).toBe(true);
    expect(result.diagnostics.map((d) => [d.severity, d.code])).toEqual([["warning", "ascii-word-boundary"]]);
    // What it warns about: the "word" never matches where a reader sees one.
    if (result.ok) expect(classify(makeFacts({ subject: "Ваш счёт готов" }), result.rules).decision.rule).toBeNull();
  });

  test.each([
    ["\\bсчёт", "\\bс"],
    ["견적\\b", "적\\b"],
    ["\\Bデータ", "\\Bデ"],
    ["\\b(견적|quote)\\b", "\\b(견"],
    ["\\b(?:quote|見積)", null],
    ["(?:quote|見積)\\b", "積)\\b"],
    ["\\bRechnung\\b", null],
    ["[\\b]견적", null],
    ["\\\\b견적", null],
    ["über\\s", null],
  ])("%s → %s", (source, expected) => {
    expect(asciiBoundaryNextToLetter(source)).toBe(expected);
  });
});
