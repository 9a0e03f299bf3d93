/**
 * Header-only parsing (extractFacts with `content: false`, chosen by rules/fact-needs.ts when
 * no rule reads body or attachments) gives exactly the decisions of a full parse for such
 * rule sets, over every message of the corpus, and the same header/envelope facts.
 * Skips (with a reason) when the corpus is not on this machine.
 */
import { expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { extractFacts } from "../../src/parse/extract.ts";
import { classify } from "../../src/rules/classify.ts";
import { factNeeds } from "../../src/rules/fact-needs.ts";
import { loadRules, parseRules } from "../../src/rules/load.ts";
import type { RuleSet } from "../../src/rules/types.ts";
import type { Envelope } from "../../src/types.ts";

const CORPUS = "/work/shared/corpus";
const STARTER_RULES = join(import.meta.dir, "../../rules.yaml");
const ENVELOPE: Envelope = { mailFrom: "sender@example.org", rcptTo: ["sales@company.com"], clientIp: "192.0.2.1", helo: "mx.example.org", tls: false };

/** Header and envelope fields only, with operators that split the corpus several ways. */
const HEADER_RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: re, priority: 90, action: drop, category: re, conditions: [{ field: subject, operator: regex, value: '^(re|aw|fwd?):' }] }
  - { name: html-ish, priority: 80, action: archive, category: ct, conditions: [{ field: "header:content-type", operator: contains, value: multipart/alternative }] }
  - { name: named, priority: 70, action: drop, category: named, conditions: [{ field: from_name, operator: exists }, { field: from, operator: ends_with, value: .com }] }
  - { name: many-to, priority: 60, action: archive, category: to, match: any, conditions: [{ field: to, operator: contains, value: example }, { field: cc, operator: exists }] }
  - { name: big, priority: 50, action: drop, category: big, conditions: [{ field: size, operator: gt, value: 20KB }] }
  - { name: mid, priority: 40, action: archive, category: mid, conditions: [{ field: "header:message-id", operator: regex, value: '@[a-m]' }] }
`;

function emlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return emlFiles(path);
    return name.endsWith(".eml") ? [path] : [];
  });
}

test("fact needs: header/envelope rules need no content, body/attachment rules do", () => {
  const header = parseRules(HEADER_RULES, "header.yaml");
  const body = parseRules(HEADER_RULES.replace("field: subject, operator: regex", "field: body, operator: regex"), "body.yaml");
  const attach = parseRules(HEADER_RULES.replace("field: from_name, operator: exists", "field: attachment_type, operator: exists"), "att.yaml");
  const auth = parseRules(HEADER_RULES.replace("field: cc, operator: exists", "field: dkim, operator: equals, value: pass"), "auth.yaml");
  if (!header.ok || !body.ok || !attach.ok || !auth.ok) throw new Error("test rules do not load");
  expect(factNeeds(header.rules)).toEqual({ content: false, auth: false });
  expect(factNeeds(body.rules)).toEqual({ content: true, auth: false });
  expect(factNeeds(attach.rules)).toEqual({ content: true, auth: false });
  expect(factNeeds(auth.rules)).toEqual({ content: false, auth: true });
  // Each authentication field alone starts the checks (else it would stay `none` in serve).
  for (const field of ["spf", "dkim", "dmarc"]) {
    const only = parseRules(HEADER_RULES.replace("field: cc, operator: exists", `field: ${field}, operator: equals, value: fail`), `${field}.yaml`);
    if (!only.ok) throw new Error(`${field} rules do not load`);
    expect(factNeeds(only.rules)).toEqual({ content: false, auth: true });
  }
  for (const field of ["body", "attachment", "attachment_type"]) {
    const only = parseRules(HEADER_RULES.replace("field: cc, operator: exists", `field: ${field}, operator: exists`), `${field}.yaml`);
    if (!only.ok) throw new Error(`${field} rules do not load`);
    expect(factNeeds(only.rules)).toEqual({ content: true, auth: false });
  }
});

test("header-only parse decides exactly like a full parse over the corpus", async () => {
  if (!existsSync(CORPUS)) {
    console.log(`skipped: no corpus at ${CORPUS}`);
    return;
  }
  const starter = await loadRules(STARTER_RULES);
  const header = parseRules(HEADER_RULES, "header.yaml");
  if (!starter.ok || !header.ok) throw new Error("rules do not load");
  const ruleSets: RuleSet[] = [starter.rules, header.rules];
  for (const rules of ruleSets) expect(factNeeds(rules).content).toBe(false);
  const files = emlFiles(CORPUS);
  expect(files.length).toBeGreaterThan(1000);
  const categories = new Set<string>();
  let compared = 0;
  for (const file of files) {
    const raw = readFileSync(file);
    const full = await extractFacts(raw, ENVELOPE);
    const headerOnly = await extractFacts(raw, ENVELOPE, { content: false });
    const { body: _b, attachments: _a, attachmentTypes: _t, parseError: _e, ...fullRest } = full;
    const { body: _hb, attachments: _ha, attachmentTypes: _ht, parseError: _he, ...headerRest } = headerOnly;
    expect(headerRest).toEqual(fullRest);
    expect([headerOnly.body, headerOnly.attachments, headerOnly.attachmentTypes]).toEqual(["", [], []]);
    for (const rules of ruleSets) {
      const a = classify(full, rules, { trace: false }).decision;
      const b = classify(headerOnly, rules, { trace: false }).decision;
      expect(b).toBe(a);
      categories.add(a.category);
      compared++;
    }
  }
  expect(compared).toBe(files.length * ruleSets.length);
  // The header rules really split the corpus (a test where every message hits the default proves little).
  expect(categories.size).toBeGreaterThanOrEqual(6);
}, 120_000);
