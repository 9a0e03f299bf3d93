/**
 * The vocabulary of rules.yaml (SPEC §3) as data: keys, fields, which operators each
 * field accepts, actions, and the limits a rules file must stay within. Validation and
 * documentation (lint messages, `rules list`) read these tables; nothing else hard-codes
 * a field or operator name.
 */
import type { Action, AuthResult, FixedField, Operator } from "./types.ts";

/** Rules files larger than this are refused: stops a misdirected or runaway file from
 * being parsed (and held in memory) at every hot reload. */
export const MAX_RULES_FILE_BYTES = 1024 * 1024;
/** Rules per file; far above real use, bounds compile time and per-message work. */
export const MAX_RULES = 10_000;
/** Conditions per rule; bounds per-message work of one rule. */
export const MAX_CONDITIONS_PER_RULE = 256;
/** Regex source length; bounds compile time and catastrophic-pattern surface. */
export const MAX_REGEX_SOURCE_CHARS = 4096;
/** YAML alias dereferences while validating; stops "billion laughs" expansion. */
export const MAX_ALIAS_RESOLUTIONS = 10_000;
/**
 * Text validated through aliases, each alias counting the bytes of the node its anchor names: at
 * most as much again as the largest file, so a file with aliases costs what one written out does.
 * Counting dereferences alone let 10,000 `*r` of one 256-regex rule (a 120 KB file) validate 2.5
 * million regexes: 34 s and 850 MB, on serve's event loop at each reload.
 */
export const MAX_ALIAS_EXPANDED_BYTES = MAX_RULES_FILE_BYTES;
/** reject_message length; the SMTP reply line (code + text) must stay under 512 octets. */
export const MAX_REJECT_MESSAGE_CHARS = 400;
/** Rule names and categories end up in logs, metrics labels and the stats page. */
export const MAX_NAME_CHARS = 64;

export const TOP_LEVEL_KEYS = ["domains", "default", "rules"] as const;
export const RULE_KEYS = [
  "name",
  "description",
  "priority",
  "category",
  "action",
  "match",
  "reject_message",
  "forward_to",
  "url",
  "archive",
  "loop_ok",
  "conditions",
] as const;
export const DEFAULT_KEYS = ["action", "category", "reject_message", "forward_to", "url", "archive", "loop_ok"] as const;
export const CONDITION_KEYS = ["field", "operator", "value", "flags", "not"] as const;

export const ACTIONS: readonly Action[] = ["reject", "archive", "forward", "webhook", "drop"];
export const AUTH_RESULTS: readonly AuthResult[] = ["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"];
export const OPERATORS: readonly Operator[] = ["equals", "contains", "starts_with", "ends_with", "regex", "in_cidr", "gt", "lt", "exists"];

/** How a field's value is read and which operators make sense for it. */
export type FieldKind = "text" | "list" | "ip" | "size" | "bool" | "auth";

const TEXT_OPERATORS: readonly Operator[] = ["equals", "contains", "starts_with", "ends_with", "regex", "exists"];

export const OPERATORS_BY_KIND: Readonly<Record<FieldKind, readonly Operator[]>> = {
  text: TEXT_OPERATORS,
  list: TEXT_OPERATORS,
  ip: [...TEXT_OPERATORS, "in_cidr"],
  size: ["equals", "gt", "lt"],
  bool: ["equals"],
  auth: ["equals"],
};

export const FIELD_KINDS: Readonly<Record<FixedField, FieldKind>> = {
  subject: "text",
  from: "list",
  from_name: "list",
  to: "list",
  cc: "list",
  rcpt: "list",
  mail_from: "text",
  body: "text",
  attachment: "list",
  attachment_type: "list",
  size: "size",
  client_ip: "ip",
  helo: "text",
  tls: "bool",
  spf: "auth",
  dkim: "auth",
  dmarc: "auth",
};

export const FIXED_FIELDS = Object.keys(FIELD_KINDS) as FixedField[];

/**
 * Fields SPEC §3 marks *(planned)*: their names are reserved (lint says they are not available
 * yet instead of "unknown"), and they get built with their own issue.
 */
export const PLANNED_FIELDS: readonly string[] = ["arc"];

export const HEADER_FIELD_PREFIX = "header:";
/** RFC 5322 field-name: printable ASCII except colon. */
export const HEADER_NAME_PATTERN = /^[!-9;-~]+$/;
export const RULE_NAME_PATTERN = /^[a-z0-9-]+$/;

export function isFixedField(name: string): name is FixedField {
  return Object.hasOwn(FIELD_KINDS, name);
}

/** Levenshtein distance, for "did you mean" hints on short identifiers. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/** ` (did you mean 'x'?)` for the closest known word, or "" when nothing is close. */
export function suggestion(word: string, known: readonly string[]): string {
  let best = "";
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of known) {
    const distance = editDistance(word.toLowerCase(), candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  const close = bestDistance <= Math.max(1, Math.floor(best.length / 3));
  return close ? ` (did you mean '${best}'?)` : "";
}

/** Longest user text a diagnostic quotes whole; longer text is cut (its length said). */
export const QUOTE_MAX_CHARS = 80;

/**
 * `'text'` for a diagnostic: control characters escaped (a newline in a quoted YAML value
 * must not break the lint's one-line-per-problem output), text over QUOTE_MAX_CHARS cut with
 * its length (a 1 MB name was quoted whole, in the lint output and serve's log).
 */
export function quoted(text: string): string {
  const cut = text.length > QUOTE_MAX_CHARS ? `${text.slice(0, QUOTE_MAX_CHARS - 20)}…` : text;
  // eslint-disable-next-line no-control-regex
  const shown = cut.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  return text.length > QUOTE_MAX_CHARS ? `'${shown}' (${text.length.toLocaleString("en-US")} characters)` : `'${shown}'`;
}

/** `a, b or c` for messages listing the allowed words. */
export function oneOf(words: readonly string[]): string {
  if (words.length <= 1) return words.join("");
  return `${words.slice(0, -1).join(", ")} or ${words[words.length - 1]}`;
}
