/**
 * Every real-world message in /work/shared/corpus parses and classifies with the starter
 * rules.yaml without throwing. Skips (with a reason) when the corpus is not on this machine.
 */
import { expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { extractFacts } from "../../src/parse/extract.ts";
import { classify } from "../../src/rules/classify.ts";
import { loadRules } from "../../src/rules/load.ts";
import type { Envelope } from "../../src/types.ts";

const CORPUS = "/work/shared/corpus";
const RULES = join(import.meta.dir, "../../rules.yaml");
const ENVELOPE: Envelope = { mailFrom: "sender@example.org", rcptTo: ["sales@company.com"], clientIp: "192.0.2.1", helo: "mx.example.org", tls: false };

function emlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return emlFiles(path);
    return name.endsWith(".eml") ? [path] : [];
  });
}

test("every corpus message parses and classifies", async () => {
  if (!existsSync(CORPUS)) {
    console.log(`skipped: no corpus at ${CORPUS}`);
    return;
  }
  const loaded = await loadRules(RULES);
  if (!loaded.ok) throw new Error(`starter rules do not load: ${JSON.stringify(loaded.diagnostics)}`);
  const files = emlFiles(CORPUS);
  expect(files.length).toBeGreaterThan(1000);
  const actions = new Map<string, number>();
  for (const file of files) {
    const facts = await extractFacts(readFileSync(file), ENVELOPE);
    const { decision } = classify(facts, loaded.rules);
    actions.set(decision.action, (actions.get(decision.action) ?? 0) + 1);
  }
  expect([...actions.values()].reduce((a, b) => a + b, 0)).toBe(files.length);
}, 60_000);
