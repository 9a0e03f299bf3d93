/**
 * Throughput of parse (extractFacts) + classify over /work/shared/corpus, with the starter
 * rules.yaml and with 200 generated rules that never match (so every condition of every rule
 * is evaluated: the worst case per message). Prints a markdown table; classify cost is shown
 * as a fraction of parse cost. Usage: bun bench/parse-classify.ts [CORPUS_DIR] [RULES_FILE]
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { extractFacts } from "../src/parse/extract.ts";
import { classify } from "../src/rules/classify.ts";
import { loadRules, parseRules } from "../src/rules/load.ts";
import type { RuleSet } from "../src/rules/types.ts";
import type { Envelope, MessageFacts } from "../src/types.ts";

const corpusDir = process.argv[2] ?? "/work/shared/corpus";
const rulesFile = process.argv[3] ?? join(import.meta.dir, "../rules.yaml");
const GENERATED_RULES = 200;
/** Passes over the corpus for classify, which is too fast to time in one pass. */
const CLASSIFY_PASSES = 20;
const ENVELOPE: Envelope = { mailFrom: "sender@example.org", rcptTo: ["sales@company.com"], clientIp: "192.0.2.1", helo: "mx.example.org", tls: false };

function emlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return emlFiles(path);
    return name.endsWith(".eml") ? [path] : [];
  });
}

/** 200 rules over every field kind and operator, with values no corpus message carries. */
function generatedRules(count: number): string {
  const shapes = [
    (i: number) => `{ field: subject, operator: contains, value: "zq-never-${i}" }`,
    (i: number) => `{ field: body, operator: regex, value: 'zq-never-${i}\\s+\\d{3}' }`,
    (i: number) => `{ field: from, operator: ends_with, value: "@zq${i}.invalid" }`,
    (i: number) => `{ field: to, operator: equals, value: "zq${i}@company.com" }`,
    (i: number) => `{ field: attachment, operator: ends_with, value: ".zq${i}" }`,
    (i: number) => `{ field: "header:X-Zq-${i}", operator: exists }`,
    (i: number) => `{ field: client_ip, operator: in_cidr, value: "10.${i % 250}.0.0/16" }`,
    (i: number) => `{ field: size, operator: gt, value: ${1_000_000_000 + i} }`,
  ];
  const rules = Array.from({ length: count }, (_, i) => {
    const a = shapes[i % shapes.length] as (i: number) => string;
    const b = shapes[(i + 3) % shapes.length] as (i: number) => string;
    return `  - name: generated-${i}\n    priority: ${count - i}\n    action: archive\n    match: any\n    conditions:\n      - ${a(i)}\n      - ${b(i)}\n`;
  });
  return `domains: [company.com]\ndefault: { action: archive, category: default }\nrules:\n${rules.join("")}`;
}

async function ruleSets(): Promise<[string, RuleSet][]> {
  const starter = await loadRules(rulesFile);
  const generated = parseRules(generatedRules(GENERATED_RULES), "generated.yaml");
  if (!starter.ok) throw new Error(`${rulesFile} does not load: ${JSON.stringify(starter.diagnostics)}`);
  if (!generated.ok) throw new Error(`generated rules do not load: ${JSON.stringify(generated.diagnostics.slice(0, 3))}`);
  return [
    [`starter rules.yaml (${starter.rules.rules.length} rules)`, starter.rules],
    [`${GENERATED_RULES} generated rules, none match`, generated.rules],
  ];
}

function timeClassify(facts: MessageFacts[], rules: RuleSet, trace: boolean): number {
  const started = performance.now();
  for (let pass = 0; pass < CLASSIFY_PASSES; pass++) for (const f of facts) classify(f, rules, { trace });
  return (performance.now() - started) / CLASSIFY_PASSES;
}

const messages = emlFiles(corpusDir).map((path) => readFileSync(path));
const totalBytes = messages.reduce((n, m) => n + m.length, 0);
for (const raw of messages.slice(0, 50)) await extractFacts(raw, ENVELOPE); // warm-up
const parseStarted = performance.now();
const facts: MessageFacts[] = [];
for (const raw of messages) facts.push(await extractFacts(raw, ENVELOPE));
const parseMs = performance.now() - parseStarted;
const partial = facts.filter((f) => f.parseError !== undefined).length;

const rate = (ms: number): string => Math.round((messages.length / ms) * 1000).toLocaleString("en-US");
console.log(`corpus: ${messages.length} messages, ${(totalBytes / 1048576).toFixed(1)} MiB (${partial} hit a parse limit)\n`);
console.log("| rules | parse ms | classify ms (hot path, no trace) | classify ms (with trace) | parse+classify msg/s | classify / parse |");
console.log("|---|---:|---:|---:|---:|---:|");
for (const [label, rules] of await ruleSets()) {
  timeClassify(facts, rules, false); // warm-up
  const hot = timeClassify(facts, rules, false);
  const traced = timeClassify(facts, rules, true);
  const share = `${((hot / parseMs) * 100).toFixed(1)} %`;
  console.log(`| ${label} | ${parseMs.toFixed(0)} | ${hot.toFixed(1)} | ${traced.toFixed(1)} | ${rate(parseMs + hot)} | ${share} |`);
}
