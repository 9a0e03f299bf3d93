/**
 * Random rule sets and message facts for the classify property test, from a seeded PRNG.
 * Rule values are drawn from the facts (whole values, prefixes, suffixes, middles, in another
 * case or normalization form) so that conditions match often enough to exercise both outcomes;
 * the text pool is heavy in what case-insensitive comparison gets wrong (Turkish İ/ı, ß/ẞ, Greek
 * final sigma, the Kelvin sign, full-width letters, combining marks, Hangul in NFD).
 */
import { domainToASCII } from "node:url";
import type { MessageFacts } from "../../src/types.ts";
import type { RefCondition, RefRule, RefRuleSet } from "./reference-classifier.ts";

export type Rng = () => number;

const pick = <T>(rng: Rng, list: readonly T[]): T => list[Math.floor(rng() * list.length)] as T;
const chance = (rng: Rng, p: number): boolean => rng() < p;
const int = (rng: Rng, min: number, max: number): number => min + Math.floor(rng() * (max - min + 1));

const ATOMS = [
  "invoice", "Invoice", "INVOICE", "Rechnung", "straße", "STRASSE", "Strasse", "ẞ", "İstanbul", "ISTANBUL", "istanbul",
  "ıi", "I", "ΟΔΟΣ", "οδος", "οδοσ", "ΠΡΟΣΦΟΡΑ", "προσφορά", "Σίσυφος", "ＡＢＣ", "ａｂｃ", "abc", "café", "cafe\u0301",
  "CAFE\u0301", "견적", "견적서".normalize("NFD"), "ﬁle", "FILE", "\u212Aelvin", "kelvin", "Ǆ", "ǅ", "ǆ", "Å", "\u212B",
  "[SPAM]", "spam", "a.b", "x+y", "100%", "😀", "€", "-", " ", "\u00a0", "\t", "0123", "1.10", "007", "wire\u0000x",
];
const LOCALS = ["alice", "Bob", "ceo", "info", "sales", "orders", "bounce+x"];
const DOMAINS = ["company.com", "example.org", "bücher.example", "xn--bcher-kva.example", "sub.company.com", "ÉCOLE.fr"];
const HEADER_NAMES = ["X-Tag", "x-tag", "X-TAG", "X-Empty", "Subject", "X-Spam-Flag", "X-Absent"];
const ATTACHMENTS = ["invoice.PDF", "Rechnung.pdf", "견적서.pdf".normalize("NFD"), "견적서.pdf", "ΟΔΟΣ.txt", "Straße.docx", "run.exe", "a"];
const TYPES = ["application/pdf", "image/png", "text/html", "application/ms-tnef", "message/rfc822"];
const AUTH = ["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"] as const;
const IPS = ["192.0.2.1", "10.1.2.3", "10.255.255.255", "::ffff:10.1.2.3", "::ffff:192.0.2.1", "2001:db8::1", "2001:db8:ffff::1", "::1", "127.0.0.1", "0.0.0.0", "::", ""];
const CIDRS = [
  "10.0.0.0/8", "10.1.2.3/32", "10.1.2.3", "192.0.2.0/24", "192.0.2.0/25", "::/0", "0.0.0.0/0", "::ffff:10.0.0.0/104",
  "::ffff:0:0/96", "::ffff:10.1.2.3/128", "2001:db8::/32", "2001:DB8::/48", "2001:db8::1", "::1/128", "127.0.0.0/8", "0.0.0.0/32",
];
const SIZE_LIMITS: (string | number)[] = [0, 1, 1023, 1024, 1025, "1KB", "1 KB", "1kb", "10MB", "10 MB", 10485760, 10485759, "1GB", 1e3];
const SIZES = [0, 1, 2, 999, 1000, 1001, 1022, 1023, 1024, 1025, 1026, 10485759, 10485760, 10485761, 1073741824, 1073741825];
const REGEXES = [
  "^\\[SPAM\\]", ".*", "^$", "\\d+", "^[a-z]+@", "@company\\.com$", "(?<!@company\\.com)$", "\\p{Script=Greek}", "\\p{Lu}",
  "ς", "σ", "ß", "strasse|straße", "i̇", "ı", "\\u{1F600}", "é", "e\u0301", "^\\s*$", "\\S", "^İ", "k", "\\.pdf$", "^10\\.",
];
const FLAGS = [undefined, undefined, undefined, "", "i", "u", "iu", "s", "m", "is", "v", "iv"];
/** IDN domains in both forms: a rule may name either (README "Addresses"). */
const IDN_FORMS: [string, string][] = [["bücher.example", "xn--bcher-kva.example"], ["école.fr", "xn--cole-9oa.fr"]];

/** A string cut at code points, so no surrogate pair is split. */
function slice(text: string, from: number, to?: number): string {
  return Array.from(text).slice(from, to).join("");
}

function text(rng: Rng, maxAtoms = 3): string {
  const parts: string[] = [];
  for (let i = int(rng, 0, maxAtoms); i > 0; i--) parts.push(pick(rng, ATOMS));
  return parts.join(pick(rng, [" ", "", " ", "-"]));
}

function address(rng: Rng, envelope: boolean): string {
  const domain = pick(rng, DOMAINS);
  // As parse/ and the SMTP layer produce them (README "Addresses"): header addresses lower-cased,
  // envelope ones with the domain in ASCII.
  if (envelope) return `${pick(rng, LOCALS)}@${domainToASCII(domain) || domain}`;
  return `${pick(rng, LOCALS)}@${domain}`.toLowerCase();
}

function list<T>(rng: Rng, max: number, make: () => T): T[] {
  return Array.from({ length: int(rng, 0, max) }, make);
}

export function randomFacts(rng: Rng): MessageFacts {
  const fromAll = list(rng, 2, () => address(rng, false));
  // As parse/ lists them: no blank display names, file names or addresses.
  const fromNames = fromAll.map(() => text(rng, 2)).filter((n) => n.trim() !== "");
  const subject = text(rng);
  const headers = new Map<string, string[]>();
  headers.set("subject", [subject, ...(chance(rng, 0.2) ? [text(rng)] : [])]);
  for (const name of ["x-tag", "x-spam-flag", "x-empty"]) {
    if (chance(rng, 0.6)) headers.set(name, name === "x-empty" ? [pick(rng, ["", " ", "\t"])] : list(rng, 3, () => text(rng, 2)).concat(pick(rng, [[], [""], ["YES"]])));
  }
  return {
    subject,
    from: fromAll[0] ?? "",
    fromName: fromNames[0] ?? "",
    fromAll,
    fromNames,
    to: list(rng, 3, () => address(rng, false)),
    cc: list(rng, 2, () => address(rng, false)),
    headers,
    body: pick(rng, [text(rng, 6), "", "\n\n  \r\n", "\u00a0\n", "line one\nline two " + text(rng)]),
    attachments: list(rng, 3, () => pick(rng, ATTACHMENTS)),
    attachmentTypes: list(rng, 3, () => pick(rng, TYPES)),
    size: pick(rng, SIZES),
    mailFrom: chance(rng, 0.15) ? "" : address(rng, true),
    rcpt: list(rng, 3, () => address(rng, true)),
    clientIp: pick(rng, IPS),
    helo: pick(rng, ["mail.example.org", "MAIL.Example.ORG", "[10.1.2.3]", "", text(rng, 1)]),
    tls: chance(rng, 0.5),
    spf: pick(rng, AUTH),
    dkim: pick(rng, AUTH),
    dmarc: pick(rng, AUTH),
  };
}

const TEXT_FIELDS = ["subject", "from", "from_name", "to", "cc", "rcpt", "mail_from", "body", "attachment", "attachment_type", "helo", "client_ip"];

/** Every value a field has in the facts, for drawing rule values that match. */
function sourceValues(field: string, facts: MessageFacts): string[] {
  if (field.startsWith("header:")) return facts.headers.get(field.slice(7).toLowerCase()) ?? [];
  const map: Record<string, string[]> = {
    subject: [facts.subject], from: facts.fromAll, from_name: facts.fromNames, to: facts.to, cc: facts.cc, rcpt: facts.rcpt,
    mail_from: [facts.mailFrom], body: [facts.body], attachment: facts.attachments, attachment_type: facts.attachmentTypes,
    helo: [facts.helo], client_ip: [facts.clientIp],
  };
  return map[field] ?? [];
}

function recase(rng: Rng, value: string): string {
  return pick(rng, [
    (v: string) => v,
    (v: string) => v.toUpperCase(),
    (v: string) => v.toLowerCase(),
    (v: string) => v.normalize("NFD"),
    (v: string) => v.normalize("NFC"),
    (v: string) => Array.from(v).map((c, i) => (i % 2 ? c.toUpperCase() : c.toLowerCase())).join(""),
  ])(value);
}

function derivedText(rng: Rng, field: string, pool: MessageFacts[]): string {
  const sources = sourceValues(field, pick(rng, pool)).filter((v) => v.trim() !== "");
  let value = sources.length > 0 && chance(rng, 0.8) ? pick(rng, sources) : pick(rng, ATOMS);
  const n = Array.from(value).length;
  const a = int(rng, 0, Math.max(0, n - 1));
  value = pick(rng, [value, value, slice(value, 0, a + 1), slice(value, a), slice(value, a, int(rng, a + 1, n))]);
  value = recase(rng, value);
  if (chance(rng, 0.3)) for (const [u, a] of IDN_FORMS) value = value.includes(u) ? value.replace(u, a) : value.replace(a, u);
  // Lint takes an empty value (contains "" holds for any text, and for a list with a value in it).
  if (chance(rng, 0.03)) return pick(rng, ["", " "]);
  return value.trim() === "" ? pick(rng, ["invoice", "ΟΣ", "ß"]) : value;
}

function textCondition(rng: Rng, field: string, pool: MessageFacts[], operator?: RefCondition["operator"]): RefCondition {
  const op = operator ?? pick(rng, ["equals", "contains", "starts_with", "ends_with", "regex", "exists"] as const);
  const not = chance(rng, 0.25) ? { not: true } : {};
  if (op === "exists") return { field, operator: op, ...not };
  if (op === "regex") {
    const escaped = derivedText(rng, field, pool).replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
    const value = pick(rng, [...REGEXES, escaped, `^${escaped}`, `${escaped}$`]);
    // A letter-case class under the default i is refused by lint (README): such a rule says u.
    const flags = value.includes("\\p{Lu}") ? pick(rng, ["u", ""]) : pick(rng, FLAGS);
    return { field, operator: op, value, ...(flags === undefined ? {} : { flags }), ...not };
  }
  return { field, operator: op, value: derivedText(rng, field, pool), ...not };
}

function condition(rng: Rng, pool: MessageFacts[]): RefCondition {
  const not = chance(rng, 0.25) ? { not: true } : {};
  const kind = rng();
  if (kind < 0.08) return { field: "size", operator: pick(rng, ["gt", "lt", "gt", "lt", "equals"] as const), value: pick(rng, SIZE_LIMITS), ...not };
  if (kind < 0.14) return { field: "client_ip", operator: "in_cidr", value: chance(rng, 0.5) ? pick(rng, CIDRS) : list(rng, 3, () => pick(rng, CIDRS)).concat(pick(rng, CIDRS)), ...not };
  if (kind < 0.18) return { field: "tls", operator: "equals", value: pick(rng, [true, false, "true", "false"]), ...not };
  if (kind < 0.24) return { field: pick(rng, ["spf", "dkim", "dmarc"]), operator: "equals", value: recase(rng, pick(rng, AUTH)), ...not };
  if (kind < 0.38) return textCondition(rng, `header:${pick(rng, HEADER_NAMES)}`, pool);
  return textCondition(rng, pick(rng, TEXT_FIELDS), pool);
}

/** A run of `equals` on one field, the shape hot-path.ts merges into one lookup. */
function equalsRun(rng: Rng, pool: MessageFacts[]): RefCondition[] {
  const field = chance(rng, 0.25) ? `header:${pick(rng, HEADER_NAMES)}` : pick(rng, TEXT_FIELDS);
  const not = chance(rng, 0.3);
  return Array.from({ length: int(rng, 4, 7) }, () => ({ ...textCondition(rng, field, pool, "equals"), ...(not || chance(rng, 0.1) ? { not: true } : {}) }));
}

/** Plain `equals` on two fields mixed, so that runs start and stop where the field changes. */
function equalsBlock(rng: Rng, pool: MessageFacts[]): RefCondition[] {
  const fields = [pick(rng, TEXT_FIELDS), chance(rng, 0.5) ? `header:${pick(rng, HEADER_NAMES)}` : pick(rng, TEXT_FIELDS)];
  return Array.from({ length: int(rng, 4, 10) }, () => textCondition(rng, fields[chance(rng, 0.7) ? 0 : 1] as string, pool, "equals"));
}

export function randomRuleSet(rng: Rng, pool: MessageFacts[]): RefRuleSet {
  const rules: RefRule[] = [];
  for (let i = int(rng, 1, 7); i > 0; i--) {
    const conditions: RefCondition[] = [];
    if (chance(rng, 0.35)) conditions.push(...equalsRun(rng, pool));
    for (let j = int(rng, conditions.length > 0 ? 0 : 1, 4); j > 0; j--) conditions.push(condition(rng, pool));
    if (chance(rng, 0.3)) conditions.push(...(chance(rng, 0.5) ? equalsRun(rng, pool) : equalsBlock(rng, pool)));
    const rule: RefRule = { name: `r${rules.length}`, action: pick(rng, ["reject", "archive", "forward", "webhook", "drop"] as const), conditions };
    if (chance(rng, 0.8)) rule.priority = pick(rng, [0, 1, 5, 5, 10, 100]);
    if (chance(rng, 0.6)) rule.category = pick(rng, ["spam", "sales", "review"]);
    if (chance(rng, 0.5)) rule.match = pick(rng, ["any", "all"] as const);
    rules.push(rule);
  }
  return { default: { action: pick(rng, ["archive", "drop"] as const), category: "default" }, rules };
}

function scalar(value: RefCondition["value"]): string {
  if (Array.isArray(value)) return `[${value.map((v) => JSON.stringify(v)).join(", ")}]`;
  // Number-like text unquoted too: YAML reads 0123 as the number 123, a rule means the text.
  if (typeof value === "string" && /^\d[\d.]*$/.test(value)) return value;
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

export function toYaml(set: RefRuleSet): string {
  const out = ["domains: [company.com]", `default: { action: ${set.default.action}, category: ${set.default.category} }`, "rules:"];
  for (const rule of set.rules) {
    out.push(`  - name: ${rule.name}`);
    if (rule.priority !== undefined) out.push(`    priority: ${rule.priority}`);
    if (rule.category !== undefined) out.push(`    category: ${rule.category}`);
    out.push(`    action: ${rule.action}`);
    if (rule.action === "forward") out.push("    forward_to: archive@elsewhere.example");
    if (rule.action === "webhook") out.push("    url: https://hooks.example/in");
    if (rule.match !== undefined) out.push(`    match: ${rule.match}`);
    out.push("    conditions:");
    for (const c of rule.conditions) {
      const parts = [`field: ${JSON.stringify(c.field)}`, `operator: ${c.operator}`];
      if (c.value !== undefined) parts.push(`value: ${scalar(c.value)}`);
      if (c.flags !== undefined) parts.push(`flags: ${JSON.stringify(c.flags)}`);
      if (c.not) parts.push("not: true");
      out.push(`      - { ${parts.join(", ")} }`);
    }
  }
  return `${out.join("\n")}\n`;
}
