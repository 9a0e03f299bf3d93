/**
 * A reference classifier written from SPEC §3 and the README's "Rules" section alone, for the
 * property test in classify-property.test.ts. It is deliberately plain and slow: no caches, no
 * merged runs, no precompiled tables; every condition is evaluated from the rule as written.
 * Where the README is silent, the choice made here is commented (and checked against mailgw).
 */
import { domainToASCII } from "node:url";
import type { MessageFacts } from "../../src/types.ts";

export interface RefCondition {
  field: string;
  operator: "equals" | "contains" | "starts_with" | "ends_with" | "regex" | "in_cidr" | "gt" | "lt" | "exists";
  value?: string | number | boolean | string[];
  flags?: string;
  not?: boolean;
}

export interface RefRule {
  name: string;
  priority?: number;
  category?: string;
  action: "reject" | "archive" | "forward" | "webhook" | "drop";
  match?: "any" | "all";
  conditions: RefCondition[];
}

export interface RefRuleSet {
  default: { action: RefRule["action"]; category: string };
  rules: RefRule[];
}

export interface RefDecision {
  rule: string | null;
  action: string;
  category: string;
}

export interface RefResult {
  decision: RefDecision;
  /** Rules tried, in order, up to the matching one, with each condition's result (after `not`). */
  trace: { rule: string; matched: boolean; conditions: boolean[] }[];
}

const ADDRESS_FIELDS = new Set(["from", "to", "cc", "rcpt", "mail_from"]);
const SIZE_UNITS: Record<string, number> = { "": 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

/**
 * "Case-insensitive" read as each letter lower-cased on its own (Unicode's simple mapping, as a
 * JavaScript `i` regex does): ß is not SS, ﬁ is not FI, İ is i + U+0307, ı is not i. The three
 * Greek sigmas Σ σ ς are one letter in two lower-case forms, so ς counts as σ.
 */
function fold(text: string): string {
  return Array.from(text.normalize("NFC"), (c) => c.toLowerCase()).join("").replace(/ς/g, "σ").normalize("NFC");
}

/**
 * An address's domain in its ASCII form (README "Addresses"); a rule value with no `@` may be a
 * domain (`ends_with: bücher.example`), so all of it is then tried in ASCII form too.
 */
function asciiDomain(text: string): string {
  const at = text.lastIndexOf("@");
  const domain = text.slice(at + 1);
  if (/^[\x00-\x7f]*$/.test(domain)) return text;
  const ascii = domainToASCII(domain);
  return ascii === "" ? text : text.slice(0, at + 1) + ascii;
}

/** The values a field holds; a multi-valued field matches when any one does. */
function fieldValues(field: string, facts: MessageFacts): string[] {
  if (field.startsWith("header:")) return facts.headers.get(field.slice(7).toLowerCase()) ?? [];
  switch (field) {
    // README: a Subject with a NUL in it is compared as the text before the NUL too.
    case "subject": return facts.subject.includes("\0") ? [facts.subject, facts.subject.slice(0, facts.subject.indexOf("\0"))] : [facts.subject];
    // README: "each of them when From: lists several": a list, empty when there is no From:.
    case "from": return facts.fromAll;
    case "from_name": return facts.fromNames;
    case "to": return facts.to;
    case "cc": return facts.cc;
    case "rcpt": return facts.rcpt;
    case "mail_from": return [facts.mailFrom];
    case "body": return [facts.body];
    case "attachment": return facts.attachments;
    case "attachment_type": return facts.attachmentTypes;
    case "client_ip": return [facts.clientIp];
    case "helo": return [facts.helo];
  }
  throw new Error(`reference: no text field ${field}`);
}

function textTest(operator: RefCondition["operator"], actual: string, expected: string): boolean {
  const a = fold(actual);
  const e = fold(expected);
  if (operator === "equals") return a === e;
  if (operator === "contains") return a.includes(e);
  if (operator === "starts_with") return a.startsWith(e);
  if (operator === "ends_with") return a.endsWith(e);
  throw new Error(`reference: ${operator} is no text operator`);
}

function regexFor(source: string, flags: string | undefined): RegExp {
  let f = flags ?? "i";
  // README: \p{…} and \u{…} mean a property / code point only with `u`, which is added for them.
  if (!f.includes("u") && !f.includes("v") && /\\[pP]\{|\\u\{/.test(source)) f += "u";
  // README: all operators compare text in NFC; a pattern is text too (a decomposed é pasted from a Mac).
  return new RegExp(source.normalize("NFC"), f);
}

/** README: a regex is tried on the text in NFC and on the text as sent. */
function regexTest(re: RegExp, actual: string): boolean {
  re.lastIndex = 0;
  if (re.test(actual.normalize("NFC"))) return true;
  re.lastIndex = 0;
  return re.test(actual);
}

function parseV4(text: string): bigint | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  let n = 0n;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255 || (p.length > 1 && p.startsWith("0"))) return null;
    n = (n << 8n) | BigInt(Number(p));
  }
  return n;
}

function parseV6(text: string): bigint | null {
  if (!/^[0-9a-fA-F:.]+$/.test(text)) return null;
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const groups = (half: string): number[] | null => {
    if (half === "") return [];
    const out: number[] = [];
    const parts = half.split(":");
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i] as string;
      if (i === parts.length - 1 && p.includes(".")) {
        const v4 = parseV4(p);
        if (v4 === null) return null;
        out.push(Number(v4 >> 16n), Number(v4 & 0xffffn));
      } else if (/^[0-9a-fA-F]{1,4}$/.test(p)) out.push(parseInt(p, 16));
      else return null;
    }
    return out;
  };
  const head = groups(halves[0] as string);
  const tail = halves.length === 2 ? groups(halves[1] as string) : [];
  if (head === null || tail === null) return null;
  if (head.length + tail.length > (halves.length === 2 ? 7 : 8)) return null;
  if (halves.length === 1 && head.length !== 8) return null;
  const all = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  return all.reduce((n, g) => (n << 16n) | BigInt(g), 0n);
}

/** An address as IPv6 bits; an IPv4 address (or ::ffff:a.b.c.d) also as its IPv4 bits. */
function parseIp(text: string): { v4: bigint | null; v6: bigint } | null {
  const v4 = parseV4(text);
  if (v4 !== null) return { v4, v6: (0xffffn << 32n) | v4 };
  const v6 = parseV6(text);
  if (v6 === null) return null;
  // A mapped address is how a dual-stack socket shows an IPv4 client: it is that IPv4 client.
  const mapped = v6 >> 32n === 0xffffn ? v6 & 0xffffffffn : null;
  return { v4: mapped, v6 };
}

function inCidr(client: string, cidr: string): boolean {
  const ip = parseIp(client);
  if (ip === null) return false;
  const [addr = "", lenText] = cidr.split("/");
  const v4 = parseV4(addr);
  const bits = v4 !== null ? 32 : 128;
  const len = lenText === undefined ? bits : Number(lenText);
  const net = v4 ?? parseV6(addr);
  const have = v4 !== null ? ip.v4 : ip.v6;
  if (net === null || have === null) return false;
  const shift = BigInt(bits - len);
  return have >> shift === net >> shift;
}

export function sizeBytes(value: string | number): number {
  if (typeof value === "number") return value;
  const m = /^\s*(\d+)\s*([a-zA-Z]*)\s*$/.exec(value);
  const unit = SIZE_UNITS[(m?.[2] ?? "").toLowerCase()];
  if (!m || unit === undefined) throw new Error(`reference: bad size ${value}`);
  return Number(m[1]) * unit;
}

/** The condition's raw result, before `not`. */
function rawTest(c: RefCondition, facts: MessageFacts): boolean {
  if (c.field === "size") {
    const n = sizeBytes(c.value as string | number);
    return c.operator === "gt" ? facts.size > n : c.operator === "lt" ? facts.size < n : facts.size === n;
  }
  if (c.field === "tls") return facts.tls === (c.value === true || String(c.value).toLowerCase() === "true");
  if (c.field === "spf" || c.field === "dkim" || c.field === "dmarc") return facts[c.field] === String(c.value).toLowerCase();
  if (c.operator === "exists") {
    // README: a header exists when the message has it; a text field when it holds more than whitespace.
    if (c.field.startsWith("header:")) return fieldValues(c.field, facts).length > 0;
    return fieldValues(c.field, facts).some((v) => /\S/u.test(v));
  }
  const values = fieldValues(c.field, facts);
  if (c.operator === "in_cidr") {
    const cidrs = Array.isArray(c.value) ? c.value : [String(c.value)];
    return values.some((v) => cidrs.some((cidr) => inCidr(v, cidr)));
  }
  if (c.operator === "regex") {
    const re = regexFor(String(c.value), c.flags);
    return values.some((v) => regexTest(re, v));
  }
  const expected = String(c.value);
  if (!ADDRESS_FIELDS.has(c.field)) return values.some((v) => textTest(c.operator, v, expected));
  const forms = [expected, asciiDomain(expected)];
  return values.some((v) => forms.some((e) => textTest(c.operator, asciiDomain(v), e)));
}

export function referenceClassify(facts: MessageFacts, set: RefRuleSet): RefResult {
  const order = set.rules.map((rule, index) => ({ rule, index }));
  order.sort((a, b) => (b.rule.priority ?? 0) - (a.rule.priority ?? 0) || a.index - b.index);
  const trace: RefResult["trace"] = [];
  for (const { rule } of order) {
    const results = rule.conditions.map((c) => rawTest(c, facts) !== (c.not === true));
    const matched = rule.match === "any" ? results.some(Boolean) : results.every(Boolean);
    trace.push({ rule: rule.name, matched, conditions: results });
    if (matched) return { decision: { rule: rule.name, action: rule.action, category: rule.category ?? rule.name }, trace };
  }
  return { decision: { rule: null, ...set.default }, trace };
}
