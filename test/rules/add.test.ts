/**
 * addRuleToText: the new rule is spliced in so every existing byte (comments, spacing,
 * quoting) survives, the result lints, and invalid rules are refused.
 */
import { describe, expect, test } from "bun:test";
import { addRuleToText, type NewRule } from "../../src/rules/add.ts";
import { parseRules } from "../../src/rules/load.ts";

const COMMENTED = await Bun.file(new URL("../fixtures/rules/commented.yaml", import.meta.url)).text();

const INVOICES: NewRule = {
  name: "invoices",
  action: "forward",
  priority: "50",
  category: "billing",
  forwardTo: ["ap@other.example", "cfo@other.example"],
  conditions: [{ field: "subject", operator: "contains", value: "invoice" }],
};

function added(text: string, rule: NewRule): string {
  const result = addRuleToText(text, "rules.yaml", rule);
  if (!result.ok) throw new Error(result.diagnostics.map((d) => `${d.line}:${d.col} ${d.message}`).join("\n"));
  return result.text;
}

describe("addRuleToText", () => {
  test("keeps every existing byte and inserts after the last rule", () => {
    const next = added(COMMENTED, INVOICES);
    const insertAt = COMMENTED.indexOf("  # a commented-out rule");
    const inserted = `  - name: invoices
    priority: 50
    category: billing
    action: forward
    forward_to: [ap@other.example, cfo@other.example]
    conditions:
      - { field: subject, operator: contains, value: invoice }
`;
    expect(next).toBe(COMMENTED.slice(0, insertAt) + inserted + COMMENTED.slice(insertAt));
    const parsed = parseRules(next, "rules.yaml");
    expect(parsed.ok && parsed.rules.rules.map((r) => r.name)).toEqual(["reject-spam-subject", "route-quote-to-sales", "invoices"]);
  });

  test("a single forward target is written as a string; --archive, url and reject message are kept", () => {
    const next = added(COMMENTED, {
      name: "hook",
      action: "webhook",
      url: "https://erp.example/in",
      archive: true,
      conditions: { field: "size", operator: "gt", value: "5MB" },
    });
    expect(next).toContain("  - name: hook\n    action: webhook\n    url: https://erp.example/in\n    archive: true\n    conditions:\n      - { field: size, operator: gt, value: 5MB }\n");
    const reject = added(COMMENTED, { name: "nope", action: "reject", rejectMessage: "Go away", conditions: [{ field: "spf", operator: "equals", value: "fail" }] });
    expect(reject).toContain('    reject_message: Go away\n');
    const one = added(COMMENTED, { ...INVOICES, forwardTo: ["ap@other.example"] });
    expect(one).toContain("    forward_to: ap@other.example\n");
  });

  test("matches the indentation of an unindented list and handles a missing final newline", () => {
    const flush = "domains: [company.com]\nrules:\n- name: a\n  action: drop\n  conditions: [{ field: subject, operator: exists }]";
    const next = added(flush, { name: "b", action: "drop", conditions: [{ field: "helo", operator: "exists" }] });
    expect(next).toBe(`${flush}\n- name: b\n  action: drop\n  conditions:\n    - { field: helo, operator: exists }\n`);
  });

  test("creates the rules list when there is none, or when it is empty", () => {
    const rule: NewRule = { name: "b", action: "drop", conditions: [{ field: "helo", operator: "exists" }] };
    const block = "  - name: b\n    action: drop\n    conditions:\n      - { field: helo, operator: exists }\n";
    expect(added("domains: [company.com] # d\n", rule)).toBe(`domains: [company.com] # d\nrules:\n${block}`);
    expect(added("rules:   # none yet\ndomains: [company.com]\n", rule)).toBe(`rules:   # none yet\n${block}domains: [company.com]\n`);
    expect(added("", rule)).toBe(`rules:\n${block}`);
    // `rules: []` becomes a block list; the rest of the file (flow lists, comments) is untouched.
    expect(added("domains: [company.com]\nrules: []\n", rule)).toBe(`domains: [company.com]\nrules:\n${block}`);
    expect(added("domains: [company.com]   # ours\nrules: []  # none yet\n# end\n", rule)).toBe(
      `domains: [company.com]   # ours\nrules:  # none yet\n${block}# end\n`,
    );
    expect(added("rules: []\ndomains: [company.com]", rule)).toBe(`rules:\n${block}domains: [company.com]`);
    const flow = added("{ domains: [company.com], rules: [] }\n", rule);
    expect(parseRules(flow, "f").ok && flow.includes("name: b")).toBe(true);
  });

  // Re-stringifying rewrote every line: `[company.com]` became `[ company.com ]`, alignment and
  // the list's layout went, and a blank line appeared: the whole file changed in `git diff`.
  test("a non-empty flow list gets the rule spliced in; every other byte stays", () => {
    const rule: NewRule = { name: "b", action: "drop", conditions: [{ field: "helo", operator: "exists" }] };
    const flowRule = "{ name: b, action: drop, conditions: [ { field: helo, operator: exists } ] }";
    const multi = "domains: [company.com]   # ours\nrules: [\n  # first\n  {name: a, action: drop,   conditions: [{field: subject, operator: exists}]}  # aligned\n]\n# end\n";
    expect(added(multi, rule)).toBe(
      `domains: [company.com]   # ours\nrules: [\n  # first\n  {name: a, action: drop,   conditions: [{field: subject, operator: exists}]},  # aligned\n  ${flowRule}\n]\n# end\n`,
    );
    const trailingComma = "domains: [company.com]\nrules: [\n  {name: a, action: drop, conditions: [{field: subject, operator: exists}]},\n]\n";
    expect(added(trailingComma, rule)).toBe(
      `domains: [company.com]\nrules: [\n  {name: a, action: drop, conditions: [{field: subject, operator: exists}]},\n  ${flowRule}\n]\n`,
    );
    const oneLine = "domains: [company.com]\nrules: [{name: a, action: drop, conditions: [{field: subject, operator: exists}]}] # flow\n";
    expect(added(oneLine, rule)).toBe(
      `domains: [company.com]\nrules: [{name: a, action: drop, conditions: [{field: subject, operator: exists}]}, ${flowRule}] # flow\n`,
    );
    const crlf = multi.replaceAll("\n", "\r\n");
    expect(added(crlf, rule)).toBe(added(multi, rule).replaceAll("\n", "\r\n"));
    for (const text of [multi, trailingComma, oneLine]) {
      const parsed = parseRules(added(text, rule), "f");
      expect(parsed.ok && parsed.rules.rules.map((r) => r.name)).toEqual(["a", "b"]);
    }
  });

  test("refuses a rule that would not lint, with positioned diagnostics", () => {
    const cases: [NewRule, string][] = [
      [{ ...INVOICES, forwardTo: [] }, "missing-forward-to"],
      [{ ...INVOICES, forwardTo: ["not-an-address"] }, "invalid-address"],
      [{ ...INVOICES, priority: "high" }, "invalid-priority"],
      [{ ...INVOICES, priority: "-3" }, "invalid-priority"],
      [{ ...INVOICES, name: "Invoices!" }, "invalid-name"],
      [{ ...INVOICES, name: "reject-spam-subject" }, "duplicate-name"],
      [{ ...INVOICES, action: "bounce" }, "unknown-action"],
      [{ ...INVOICES, conditions: [{ field: "subject", operator: "regex", value: "(" }] }, "invalid-regex"],
      [{ ...INVOICES, conditions: [] }, "missing-conditions"],
      [{ ...INVOICES, action: "webhook", forwardTo: [] }, "missing-url"],
    ];
    for (const [rule, code] of cases) {
      const result = addRuleToText(COMMENTED, "rules.yaml", rule);
      expect(result.ok).toBe(false);
      const error = result.diagnostics.find((d) => d.severity === "error");
      expect(error?.code).toBe(code);
      expect(error?.line).toBeGreaterThan(27);
    }
  });

  test("refuses to add to a file that already has errors", async () => {
    const invalid = await Bun.file(new URL("../fixtures/rules/invalid.yaml", import.meta.url)).text();
    const result = addRuleToText(invalid, "invalid.yaml", INVOICES);
    expect(result.ok).toBe(false);
    expect(result.diagnostics.map((d) => [d.line, d.col, d.code])).toContainEqual([6, 51, "invalid-regex"]);
  });

  test("shows the warnings the new rule brings, not the file's own ones again", () => {
    const text = "domains: [company.com]\nrules:\n  - name: catch-all\n    priority: 1\n    action: forward\n    forward_to: inbox@company.com\n" +
      "    conditions: [{ field: subject, operator: regex, value: '.*' }]\n";
    const result = addRuleToText(text, "rules.yaml", { name: "late", action: "archive", conditions: [{ field: "subject", operator: "contains", value: "x" }] });
    expect(result.ok).toBe(true);
    // The file's forward-loop warning is not repeated; the new rule's shadowing is reported.
    expect(result.diagnostics.map((d) => [d.line, d.code])).toEqual([[8, "shadowed-rule"]]);
  });
});

test("a CRLF file gets CRLF lines for the new rule", () => {
  const text = "domains: [company.com]\r\nrules:\r\n  - name: a\r\n    action: drop\r\n    conditions: [{ field: subject, operator: exists }]\r\n# end\r\n";
  const next = added(text, { name: "b", action: "drop", conditions: [{ field: "helo", operator: "exists" }] });
  expect(next).toBe(
    "domains: [company.com]\r\nrules:\r\n  - name: a\r\n    action: drop\r\n    conditions: [{ field: subject, operator: exists }]\r\n" +
      "  - name: b\r\n    action: drop\r\n    conditions:\r\n      - { field: helo, operator: exists }\r\n# end\r\n",
  );
});

// A subject as French mail writes it, given on purpose: plain, the curly quotes are what the
// typographic-quotes warning is about, so the file `rules add` wrote warned on every lint.
test("a value given in typographic quotes is written in double quotes, and the file lints clean", () => {
  const promo: NewRule = { name: "promo", action: "drop", conditions: [{ field: "subject", operator: "contains", value: "« Promo »" }] };
  for (const text of ["domains: [company.com]\nrules: []\n", "domains: [company.com]\nrules: [{ name: a, action: drop, conditions: [{ field: helo, operator: exists }] }]\n", "{ domains: [company.com], rules: [] }\n"]) {
    const result = addRuleToText(text, "rules.yaml", promo);
    expect(result).toMatchObject({ ok: true, diagnostics: [] });
    if (result.ok) expect(result.text).toContain('value: "« Promo »"');
  }
});
