/**
 * The one code path from rules.yaml text to a compiled rule set: YAML parse (with node
 * positions), structural validation, file-wide checks (duplicate names, rules shadowed
 * by a catch-all, forward targets that loop back through this gateway), then
 * compilation into evaluation order. `lint` and the loader both call this, so serve
 * refuses exactly what lint refuses. Pure: no file system, no clock.
 */
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument, type YAMLMap } from "yaml";
import { normalizeDomain } from "./address.ts";
import { ruleChecks } from "./hot-path.ts";
import { compileCondition, SlotAllocator } from "./matchers.ts";
import { MAX_RULES, quoted, TOP_LEVEL_KEYS } from "./schema.ts";
import type { CompiledRule, Decision, Diagnostic } from "./types.ts";
import { type ActionFields, type RuleDraft, validateDefault, validateRule } from "./validate-rule.ts";
import { entryMap, type MapEntry, YamlContext } from "./yaml-context.ts";
import { oddSpaceProblems, quotedScalarRanges } from "./odd-spaces.ts";
import { yamlProblems } from "./yaml-errors.ts";

export interface CompiledRules {
  domains: string[];
  defaultDecision: Decision;
  rules: CompiledRule[];
  slotCount: number;
}

export interface ValidationResult {
  diagnostics: Diagnostic[];
  /** Present only when there are no errors. */
  compiled: CompiledRules | null;
}

const DEFAULT_DECISION_FIELDS: ActionFields = {
  action: "archive",
  category: "default",
  forwardTo: [],
  url: null,
  rejectMessage: null,
  archive: true,
};

function parseDomains(ctx: YamlContext, entry: MapEntry | undefined, top: YAMLMap): string[] {
  if (entry === undefined) {
    ctx.warn(top, "no-domains", "no 'domains' list: every recipient is refused (550 relaying denied); add domains: [example.com]");
    return [];
  }
  if (!isSeq(entry.value)) {
    ctx.error(entry.value ?? entry.keyNode, "invalid-domains", "domains must be a list of domain names, e.g. [example.com]");
    return [];
  }
  // A Set, not domains.includes: a hosting gateway lists tens of thousands of domains, and a
  // quadratic scan of 50,000 took seconds on every load (serve's event loop included).
  const domains = new Set<string>();
  for (const item of ctx.scalarList(entry.value)) {
    const text = ctx.string(item, "a domain", entry.keyNode);
    if (text === null) continue;
    const domain = normalizeDomain(text.trim());
    if (domain === null) ctx.error(item, "invalid-domain", `${quoted(text)} is not a valid domain name (write example.com, without @ or brackets)`);
    else if (domains.has(domain)) ctx.warn(item, "duplicate-domain", `domain '${text}' is listed twice`);
    else domains.add(domain);
  }
  if (entry.value.items.length === 0) {
    ctx.warn(entry.value, "no-domains", "empty 'domains' list: every recipient is refused (550 relaying denied); add domains: [example.com]");
  }
  return [...domains];
}

function freezeDecision(rule: string | null, category: string, fields: ActionFields): Decision {
  return Object.freeze({
    rule,
    category,
    action: fields.action,
    forwardTo: Object.freeze(fields.forwardTo.map((t) => t.address)) as string[],
    url: fields.url,
    rejectMessage: fields.rejectMessage,
    archive: fields.archive,
  });
}

function warnLoops(ctx: YamlContext, fields: ActionFields, domains: ReadonlySet<string>, where: string): void {
  for (const target of fields.forwardTo) {
    const domain = target.address.slice(target.address.lastIndexOf("@") + 1);
    if (!domains.has(domain)) continue;
    ctx.warn(
      target.node,
      "forward-loop",
      `${where} forwards to ${target.address}, a domain this gateway accepts (${domain}); if the relay delivers it to this MX it loops. ` +
        "Make sure the relay delivers it to the mailbox server, then set loop_ok: true",
    );
  }
}

/**
 * Duplicate names are checked on the raw items, so a rule with other errors still counts. A name
 * is compared as parseName reads it (ctx.text): `name: 2024` is a number to YAML, and two such
 * rules were both accepted, sharing one name in the decisions, logs and stats.
 */
function checkDuplicateNames(ctx: YamlContext, rules: readonly (Node | null)[]): void {
  const seen = new Map<string, number>();
  for (const map of rules) {
    if (!isMap(map)) continue;
    const nameNode = map.items.find((pair) => isScalar(pair.key) && pair.key.value === "name")?.value;
    if (!isScalar(nameNode) || nameNode.value === null || typeof nameNode.value === "object") continue;
    const name = ctx.text(nameNode);
    const firstLine = seen.get(name);
    if (firstLine === undefined) seen.set(name, ctx.posOf(map).line);
    else ctx.error(nameNode, "duplicate-name", `duplicate rule name ${quoted(name)} (first defined at line ${firstLine})`);
  }
}

function compileRule(draft: RuleDraft, slots: SlotAllocator): CompiledRule {
  const category = draft.fields.category ?? draft.name;
  const conditions = Object.freeze(draft.conditions.map((spec) => compileCondition(spec, slots)));
  return Object.freeze({
    name: draft.name,
    priority: draft.priority,
    category,
    action: draft.fields.action,
    match: draft.match,
    conditions,
    checks: ruleChecks(draft.match, draft.conditions, conditions, slots),
    decision: freezeDecision(draft.name, category, draft.fields),
    pos: draft.pos,
    fileIndex: draft.fileIndex,
  });
}

function alwaysMatches(rule: CompiledRule): boolean {
  return rule.match === "any" ? rule.conditions.some((c) => c.alwaysTrue) : rule.conditions.every((c) => c.alwaysTrue);
}

function warnShadowed(ctx: YamlContext, ordered: readonly CompiledRule[]): void {
  const catchAll = ordered.findIndex(alwaysMatches);
  if (catchAll === -1) return;
  const by = ordered[catchAll] as CompiledRule;
  for (const rule of ordered.slice(catchAll + 1)) {
    ctx.reportAt(
      "warning",
      rule.pos,
      "shadowed-rule",
      `rule '${rule.name}' can never match: catch-all rule '${by.name}' (priority ${by.priority}, line ${by.pos.line}) matches every message first`,
    );
  }
}

/** All rules that validated, and whether every rule did. */
function validateRules(ctx: YamlContext, entry: MapEntry | undefined): { drafts: RuleDraft[]; ok: boolean } {
  // `rules:` with nothing after it (every rule commented out) or `rules: ~`: no rules, the
  // default applies, as with the key left out.
  if (entry === undefined || entry.value === null || (isScalar(entry.value) && entry.value.value === null)) return { drafts: [], ok: true };
  const seq = ctx.asSeq(entry.value, "rules", entry.keyNode);
  if (seq === null) return { drafts: [], ok: false };
  if (seq.items.length > MAX_RULES) {
    ctx.error(seq, "too-many-rules", `more than ${MAX_RULES} rules`);
    return { drafts: [], ok: false };
  }
  // Each alias followed once (the alias budget counts what it repeats).
  const nodes = seq.items.map((item) => ctx.deref(item));
  const results = nodes.map((node, index) => validateRule(ctx, node, seq, index));
  const drafts = results.filter((d): d is RuleDraft => d !== null);
  checkDuplicateNames(ctx, nodes);
  return { drafts, ok: drafts.length === results.length };
}

function validateTop(ctx: YamlContext, top: YAMLMap): CompiledRules | null {
  const entries = entryMap(ctx.entries(top, TOP_LEVEL_KEYS, "the top level"));
  const domains = parseDomains(ctx, entries.get("domains"), top);
  const accepted = new Set(domains);
  const defaultEntry = entries.get("default");
  const defaultFields = defaultEntry === undefined ? DEFAULT_DECISION_FIELDS : validateDefaultWithLoop(ctx, defaultEntry, accepted);
  const { drafts, ok } = validateRules(ctx, entries.get("rules"));
  for (const draft of drafts) if (!draft.loopOk) warnLoops(ctx, draft.fields, accepted, `rule '${draft.name}'`);
  if (!ok || defaultFields === null || ctx.errorCount > 0) return null;
  const ordered = [...drafts].sort((a, b) => b.priority - a.priority || a.fileIndex - b.fileIndex);
  const slots = new SlotAllocator();
  const rules = ordered.map((draft) => compileRule(draft, slots));
  warnShadowed(ctx, rules);
  const defaultDecision = freezeDecision(null, defaultFields.category ?? "default", defaultFields);
  return { domains, defaultDecision, rules, slotCount: slots.count };
}

function validateDefaultWithLoop(ctx: YamlContext, entry: MapEntry, domains: ReadonlySet<string>): ActionFields | null {
  const result = validateDefault(ctx, entry.value, entry.keyNode);
  if (result === null) return null;
  if (!result.loopOk) warnLoops(ctx, result.fields, domains, "the default");
  return result.fields;
}

export function validateRulesText(text: string, file: string): ValidationResult {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const ctx = new YamlContext(file, doc, lineCounter);
  // A no-break space where YAML needs a space: the library's errors about it point elsewhere.
  const spaces = oddSpaceProblems(text, quotedScalarRanges(doc));
  for (const p of spaces) ctx.reportAt("error", ctx.posAt(p.offset), "yaml-syntax", p.message);
  if (spaces.length === 0) {
    for (const p of yamlProblems(doc.errors, text)) ctx.reportAt("error", ctx.posAt(p.offset), "yaml-syntax", p.message);
    for (const p of yamlProblems(doc.warnings, text)) ctx.reportAt("warning", ctx.posAt(p.offset), "yaml-warning", p.message);
  }
  let compiled: CompiledRules | null = null;
  if (doc.errors.length === 0 && spaces.length === 0) {
    const contents = ctx.deref(doc.contents) as Node | null;
    if (contents === null) ctx.reportAt("error", { line: 1, col: 1 }, "empty-file", "rules file is empty; it needs at least domains: [...]");
    else {
      const top = ctx.asMap(contents, "the rules file", contents);
      if (top !== null) compiled = validateTop(ctx, top);
    }
  }
  const diagnostics = ctx.diagnostics.sort((a, b) => a.line - b.line || a.col - b.col);
  return { diagnostics, compiled: ctx.errorCount === 0 ? compiled : null };
}
