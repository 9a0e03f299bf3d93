/**
 * The case-insensitive text operators and Greek sigma. Capital Σ lower-cases to ς at the end of a
 * word and to σ elsewhere (JavaScript's toLowerCase follows Unicode's Final_Sigma rule), so the
 * same capitals lower-cased differently with what followed them: `contains ΠΡΟΣ` missed the subject
 * "ΠΡΟΣΦΟΡΑ" and `contains ΟΔΟΣ` the file "ΟΔΟΣ.txt", which a case-sensitive test finds. Checked on
 * the traced path (`mailgw test`), the untraced one (serve) with its merged equals runs, and through
 * the real `mailgw test` CLI on a message file.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { classify } from "../../src/rules/classify.ts";
import { parseRules } from "../../src/rules/load.ts";
import { type FactsInput, makeFacts } from "../helpers/facts.ts";

const ROOT = join(import.meta.dir, "../..");

function rulesYaml(conditions: string[], match = "all"): string {
  return ["domains: [company.com]", "rules:", "  - name: r", "    action: drop", `    match: ${match}`, "    conditions:", ...conditions.map((c) => `      - ${c}`), ""].join("\n");
}

function decided(conditions: string[], input: FactsInput, match = "all"): [string | null, string | null] {
  const result = parseRules(rulesYaml(conditions, match), "test.yaml", { loadedAt: new Date(0) });
  if (!result.ok) throw new Error(result.diagnostics.map((d) => d.message).join("\n"));
  const facts = makeFacts(input);
  return [classify(facts, result.rules).decision.rule, classify(facts, result.rules, { trace: false }).decision.rule];
}

describe("Σ, σ and ς are one letter to the case-insensitive operators", () => {
  test.each([
    ["contains a word's start in capitals", `{ field: subject, operator: contains, value: ΠΡΟΣ }`, { subject: "ΠΡΟΣΦΟΡΑ ΓΙΑ ΕΣΑΣ" }],
    ["contains, file name with an extension", `{ field: attachment, operator: contains, value: ΟΔΟΣ }`, { attachments: ["ΟΔΟΣ.txt"] }],
    ["starts_with in lower case, file name in capitals", `{ field: attachment, operator: starts_with, value: οδος }`, { attachments: ["ΟΔΟΣ.txt"] }],
    ["ends_with a lone capital sigma", `{ field: helo, operator: ends_with, value: Σ }`, { helo: "ΟΔΟΣ" }],
    ["equals, medial sigma typed at a word's end", `{ field: from_name, operator: equals, value: ΟΔΟΣ }`, { fromName: "οδοσ" }],
    ["equals, final sigma typed mid-word", `{ field: "header:X-Tag", operator: equals, value: ΟΔΟΣΟΔΟΣ }`, { headers: { "x-tag": "οδοςοδος" } }],
    ["address local part", `{ field: rcpt, operator: equals, value: ΟΔΟΣ@company.com }`, { rcpt: ["οδοσ@company.com"] }],
  ] as [string, string, FactsInput][])("%s", (_name, condition, input) => {
    expect(decided([condition], input)).toEqual(["r", "r"]);
    expect(decided([condition.replace(" }", ", not: true }")], input)).toEqual([null, null]);
  });

  test("a merged run of equals (match: any) folds the sigmas as a lone equals does", () => {
    const run = ["ΑΘΗΝΑΣ", "ΠΕΙΡΑΙΑΣ", "ΠΑΤΡΑΣ", "ΛΑΡΙΣΑΣ"].map((v) => `{ field: "header:X-Office", operator: equals, value: ${v} }`);
    expect(decided(run, { headers: { "x-office": "Πατρασ" } }, "any")).toEqual(["r", "r"]);
    expect(decided(run, { headers: { "x-office": "Κρήτη" } }, "any")).toEqual([null, null]);
  });

  test("other letters keep their meaning: σ is still not s, nor ß SS", () => {
    expect(decided([`{ field: subject, operator: contains, value: σ }`], { subject: "s" })).toEqual([null, null]);
    expect(decided([`{ field: subject, operator: contains, value: straße }`], { subject: "STRASSE" })).toEqual([null, null]);
  });
});

describe("through the real `mailgw test` CLI", () => {
  const dir = mkdtempSync(join(tmpdir(), "mailgw-sigma-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("a subject in Greek capitals matches a rule naming the word's start", async () => {
    const rules = ["domains: [company.com]", "default: { action: archive, category: default }", "rules:", "  - name: greek-offers", "    action: drop", "    conditions:", "      - { field: subject, operator: contains, value: ΠΡΟΣ }", ""].join("\n");
    writeFileSync(join(dir, "rules.yaml"), rules);
    // Subject: ΠΡΟΣΦΟΡΑ (an offer), as an RFC 2047 encoded word.
    const subject = `=?UTF-8?B?${Buffer.from("ΠΡΟΣΦΟΡΑ").toString("base64")}?=`;
    writeFileSync(join(dir, "message.eml"), `From: a@sender.example\r\nTo: b@company.com\r\nSubject: ${subject}\r\n\r\nhello\r\n`);
    const child = Bun.spawn([process.execPath, join(ROOT, "src/main.ts"), "test", "message.eml", "--rules", "rules.yaml", "--json"], {
      cwd: dir,
      stdout: "pipe",
      stderr: "pipe",
      env: { PATH: process.env.PATH ?? "", HOME: dir },
    });
    const [stdout, code] = await Promise.all([new Response(child.stdout).text(), child.exited]);
    expect(code).toBe(0);
    const decision = JSON.parse(stdout).decision;
    expect(decision.rule).toBe("greek-offers");
    expect(decision.action).toBe("drop");
  });
});
