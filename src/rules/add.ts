/**
 * `rules add` as a pure text transform: rules.yaml text + a new rule → new text, or the
 * diagnostics that refuse it. The existing bytes are kept exactly (comments, alignment,
 * quoting): yaml's Document API locates the end of the `rules:` list and renders the new
 * rule, which is spliced in as text. (Re-stringifying the whole document would move
 * comments and re-space flow lists.) An empty `rules: []` becomes a block list; a non-empty
 * flow list gets the rule as a flow mapping; only a file that is one flow mapping falls back
 * to re-stringifying.
 * The result is validated by the same lint as the loader; any error refuses the change.
 */
import { Document, isMap, isScalar, isSeq, parseDocument, type Node, visit, type YAMLMap, type YAMLSeq } from "yaml";
import { lintRules } from "./load.ts";
import { TYPOGRAPHIC_QUOTED } from "./validate-condition.ts";
import type { Diagnostic } from "./types.ts";

export interface NewRule {
  name: string;
  action: string;
  /** A number, or the text given on the command line (lint reports a bad one). */
  priority?: number | string;
  category?: string;
  forwardTo?: readonly string[];
  url?: string;
  rejectMessage?: string;
  archive?: boolean;
  /** The forward targets are in `domains` on purpose (the relay delivers them to the mailbox server). */
  loopOk?: boolean;
  /** Parsed JSON: a list of condition objects (or one object); lint validates it. */
  conditions: unknown;
}

export type AddResult = { ok: true; text: string; diagnostics: Diagnostic[] } | { ok: false; diagnostics: Diagnostic[] };

function ruleObject(rule: NewRule): Record<string, unknown> {
  const object: Record<string, unknown> = { name: rule.name };
  if (rule.priority !== undefined) {
    const numeric = typeof rule.priority === "string" && /^-?\d+$/.test(rule.priority) ? Number(rule.priority) : rule.priority;
    object.priority = numeric;
  }
  if (rule.category !== undefined) object.category = rule.category;
  object.action = rule.action;
  if (rule.rejectMessage !== undefined) object.reject_message = rule.rejectMessage;
  if (rule.forwardTo !== undefined && rule.forwardTo.length > 0) {
    object.forward_to = rule.forwardTo.length === 1 ? rule.forwardTo[0] : [...rule.forwardTo];
  }
  if (rule.url !== undefined) object.url = rule.url;
  if (rule.archive === true) object.archive = true;
  if (rule.loopOk === true) object.loop_ok = true;
  object.conditions = Array.isArray(rule.conditions) ? rule.conditions : [rule.conditions];
  return object;
}

/**
 * The rule as a YAML document. A value given wrapped in typographic quotes (`« Promo »`, a
 * subject as French mail writes it) is written in double quotes: plain, it was what lint warns
 * about (typographic-quotes), so the file `rules add` wrote warned on every lint and reload.
 */
function ruleDocument(value: unknown): Document {
  const doc = new Document(value);
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value === "string" && node.value.length >= 2 && TYPOGRAPHIC_QUOTED.test(node.value)) node.type = "QUOTE_DOUBLE";
    },
  });
  return doc;
}

/** `- name: …` block for the rule, each line indented by `indent` spaces. */
export function renderRule(rule: NewRule, indent: number): string {
  const doc = ruleDocument([ruleObject(rule)]);
  const seq = doc.contents;
  if (isSeq(seq)) {
    for (const item of seq.items) if (isMap(item)) flowStyleLists(item);
  }
  const pad = " ".repeat(indent);
  return doc
    .toString({ lineWidth: 0 })
    .split("\n")
    .map((line) => (/^\s*forward_to: \[ .* \]$/.test(line) ? line.replace("[ ", "[").replace(/ \]$/, "]") : line))
    .map((line) => (line === "" ? line : pad + line))
    .join("\n");
}

/** Conditions one per line as `{ field: …, operator: …, value: … }`, forward_to as `[a, b]`. */
function flowStyleLists(rule: YAMLMap): void {
  for (const pair of rule.items) {
    const key = isScalar(pair.key) ? pair.key.value : null;
    const value = pair.value as Node | null;
    if (key === "conditions" && isSeq(value)) {
      for (const condition of value.items) if (isMap(condition)) condition.flow = true;
    }
    if (key === "forward_to" && isSeq(value)) value.flow = true;
  }
}

function lineStart(text: string, offset: number): number {
  return text.lastIndexOf("\n", offset - 1) + 1;
}

/** Offset just after the line on which `offset - 1` lies (end of text if no newline). */
function afterLine(text: string, offset: number): number {
  if (offset > 0 && text[offset - 1] === "\n") return offset;
  const newline = text.indexOf("\n", offset);
  return newline === -1 ? text.length : newline + 1;
}

function withNewline(text: string): string {
  return text === "" || text.endsWith("\n") ? text : `${text}\n`;
}

/** Splices the rendered rule into the text; null when only a full re-stringify works. */
function spliceRule(text: string, rule: NewRule): string | null {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) return null;
  if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) {
    return `${withNewline(text)}rules:\n${renderRule(rule, 2)}`;
  }
  if (!isMap(doc.contents)) return null;
  const pair = doc.contents.items.find((p) => isScalar(p.key) && p.key.value === "rules");
  if (pair === undefined) return `${withNewline(text)}rules:\n${renderRule(rule, 2)}`;
  const value = pair.value as Node | null;
  if (value === null || (isScalar(value) && value.value === null)) {
    const keyEnd = (pair.key as Node).range?.[1] ?? 0;
    const at = afterLine(text, keyEnd);
    const before = at === text.length ? withNewline(text) : text.slice(0, at);
    return `${before}${renderRule(rule, 2)}${text.slice(at)}`;
  }
  if (isSeq(value) && value.flow === true && value.items.length === 0 && doc.contents.flow !== true) {
    // `rules: []` (how most files start): the `[]` goes, the rule follows as a block list.
    const head = text.slice(0, value.range?.[0] ?? 0).replace(/[ \t]+$/, "");
    const without = head + text.slice(value.range?.[1] ?? 0);
    const at = afterLine(without, head.length);
    const before = at === without.length ? withNewline(without) : without.slice(0, at);
    return `${before}${renderRule(rule, 2)}${without.slice(at)}`;
  }
  if (isSeq(value) && value.flow === true && value.items.length > 0 && doc.contents.flow !== true) return spliceIntoFlowList(text, value, rule);
  if (!isSeq(value) || value.flow === true || value.items.length === 0) return null;
  const last = value.items[value.items.length - 1] as Node;
  const seqStart = value.range?.[0] ?? 0;
  const indent = seqStart - lineStart(text, seqStart);
  const at = afterLine(text, last.range?.[1] ?? text.length);
  const before = at === text.length ? withNewline(text) : text.slice(0, at);
  return `${before}${renderRule(rule, indent)}${text.slice(at)}`;
}

/** The rule as one flow mapping, `{ name: …, conditions: [ … ] }`, for a flow-style list. */
function renderFlowRule(rule: NewRule): string {
  const doc = ruleDocument(ruleObject(rule));
  if (isMap(doc.contents)) doc.contents.flow = true;
  return doc.toString({ lineWidth: 0 }).trimEnd();
}

/**
 * `rules: [ {…}, {…} ]`: the rule goes after the last one as a flow mapping; a `]` on a line of
 * its own gets the rule on a line before it, indented as the last rule. null when the list's
 * text is not as expected, or the result would not hold exactly one more rule (then restringify).
 */
function spliceIntoFlowList(text: string, seq: YAMLSeq, rule: NewRule): string | null {
  const last = seq.items[seq.items.length - 1] as Node;
  const [lastStart, lastEnd] = last.range ?? [];
  const close = (seq.range?.[1] ?? 0) - 1;
  if (lastStart === undefined || lastEnd === undefined || text[close] !== "]" || close < lastEnd) return null;
  const comma = /^\s*,/.exec(text.slice(lastEnd, close));
  const flowRule = renderFlowRule(rule);
  const closeLine = lineStart(text, close);
  let next: string;
  if (closeLine > lastEnd && text.slice(closeLine, close).trim() === "") {
    const lead = text.slice(lineStart(text, lastStart), lastStart);
    const indent = lead.trim() === "" ? lead : `${text.slice(closeLine, close)}  `;
    const eol = text.slice(closeLine - 2, closeLine) === "\r\n" ? "\r\n" : "\n";
    next = `${text.slice(0, lastEnd)}${comma ? "" : ","}${text.slice(lastEnd, closeLine)}${indent}${flowRule}${eol}${text.slice(closeLine)}`;
  } else {
    const at = comma ? lastEnd + comma[0].length : lastEnd;
    next = `${text.slice(0, at)}${comma ? " " : ", "}${flowRule}${text.slice(at)}`;
  }
  const check = parseDocument(next);
  const rules = check.errors.length === 0 ? check.get("rules", true) : null;
  return isSeq(rules) && rules.items.length === seq.items.length + 1 ? next : null;
}

/** Fallback for a file that is one flow mapping: append through the Document API. */
function restringify(text: string, rule: NewRule): string {
  const doc = parseDocument(text);
  const rendered = ruleDocument(ruleObject(rule)).contents;
  if (isMap(rendered)) flowStyleLists(rendered);
  const rules = doc.get("rules", true);
  if (isSeq(rules)) rules.items.push(rendered);
  else doc.set("rules", doc.createNode([rendered]));
  return doc.toString({ lineWidth: 0 });
}

/** Gives the inserted lines the file's CRLF endings (the original bytes are left as they were). */
function toCrlf(original: string, spliced: string): string {
  let start = 0;
  while (start < original.length && original[start] === spliced[start]) start++;
  const tail = original.length - start;
  const inserted = spliced.slice(start, spliced.length - tail);
  return spliced.slice(0, start) + inserted.replace(/(?<!\r)\n/g, "\r\n") + spliced.slice(spliced.length - tail);
}

/** The file text with the rule appended, if the result lints without errors. */
export function addRuleToText(text: string, fileName: string, rule: NewRule): AddResult {
  const spliced = spliceRule(text, rule);
  const crlf = spliced !== null && text.includes("\r\n");
  const next = spliced === null ? restringify(text, rule) : crlf ? toCrlf(text, spliced) : spliced;
  const all = lintRules(next, fileName);
  // Shown: every error (one already in the file refuses the change too) and the new warnings;
  // the file's own warnings are `rules lint`'s to repeat, not every `rules add`'s (appending
  // shifts no earlier line, so their texts are unchanged).
  const known = new Set(lintRules(text, fileName).map(diagnosticKey));
  const diagnostics = all.filter((d) => d.severity === "error" || !known.has(diagnosticKey(d)));
  if (all.some((d) => d.severity === "error")) return { ok: false, diagnostics };
  return { ok: true, text: next, diagnostics };
}

function diagnosticKey(d: Diagnostic): string {
  return `${d.line}:${d.col}:${d.code}:${d.message}`;
}
