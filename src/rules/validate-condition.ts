/**
 * Validates one `conditions:` item of a rule (field, operator, value, flags, not) and
 * turns it into a ConditionSpec for matchers.ts. Every problem is reported at the key or
 * value that causes it; a condition with any error yields null (the rule then fails to
 * compile, and so does the file). Regexes are compiled here, once.
 */
import { isScalar, isSeq, type Node } from "yaml";
import { clientIpForm, parseCidrRange, type CidrRange } from "./cidr.ts";
import { REGEX_BUDGET_MS, type ConditionSpec, type ConditionValue } from "./matchers.ts";
import { nestedRepetition } from "./regex-risk.ts";
import { asciiBoundaryNextToLetter, caseClassUnderI, unicodeEscapeWithoutU } from "./regex-unicode.ts";
import {
  AUTH_RESULTS,
  CONDITION_KEYS,
  FIELD_KINDS,
  PLANNED_FIELDS,
  FIXED_FIELDS,
  type FieldKind,
  HEADER_FIELD_PREFIX,
  HEADER_NAME_PATTERN,
  isFixedField,
  MAX_REGEX_SOURCE_CHARS,
  OPERATORS,
  OPERATORS_BY_KIND,
  oneOf,
  suggestion,
  quoted,
} from "./schema.ts";
import type { AuthResult, FieldName, Operator } from "./types.ts";
import { entryMap, type MapEntry, type YamlContext } from "./yaml-context.ts";

/** Regex flags a rule may use; `g`, `y` (stateful lastIndex) and `d` (no effect) are refused. */
const ALLOWED_REGEX_FLAGS = "imsuv";
/** Default for text fields (SPEC §3): case-insensitive. `flags:` replaces it entirely. */
const DEFAULT_REGEX_FLAGS = "i";
const SIZE_UNITS: Readonly<Record<string, number>> = { "": 1, b: 1, k: 1024, kb: 1024, m: 1024 ** 2, mb: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3 };

function parseField(ctx: YamlContext, entry: MapEntry): { field: FieldName; kind: FieldKind } | null {
  const text = ctx.string(entry.value, "field", entry.keyNode);
  if (text === null) return null;
  if (text.startsWith(HEADER_FIELD_PREFIX)) {
    const name = text.slice(HEADER_FIELD_PREFIX.length).trim();
    if (!HEADER_NAME_PATTERN.test(name)) {
      ctx.error(entry.value, "unknown-field", `${quoted(text)} names no header; write header:<Name>, e.g. header:X-Spam-Flag`);
      return null;
    }
    return { field: `header:${name.toLowerCase()}`, kind: "list" };
  }
  if (isFixedField(text)) return { field: text, kind: FIELD_KINDS[text] };
  if (PLANNED_FIELDS.includes(text)) {
    ctx.error(entry.value, "planned-field", `field ${quoted(text)} is planned but not available yet; fields: ${oneOf([...FIXED_FIELDS, "header:<Name>"])}`);
    return null;
  }
  const known = [...FIXED_FIELDS, "header:<Name>"];
  ctx.error(entry.value, "unknown-field", `unknown field ${quoted(text)}${suggestion(text, FIXED_FIELDS)}; fields: ${oneOf(known)}`);
  return null;
}

function parseOperator(ctx: YamlContext, entry: MapEntry, field: FieldName, kind: FieldKind): Operator | null {
  const text = ctx.string(entry.value, "operator", entry.keyNode);
  if (text === null) return null;
  const operator = OPERATORS.find((op) => op === text);
  if (operator === undefined) {
    ctx.error(entry.value, "unknown-operator", `unknown operator ${quoted(text)}${suggestion(text, OPERATORS)}; operators: ${oneOf(OPERATORS)}`);
    return null;
  }
  const allowed = OPERATORS_BY_KIND[kind];
  if (!allowed.includes(operator)) {
    ctx.error(entry.value, "operator-field-mismatch", `operator '${operator}' does not apply to field '${field}'; use ${oneOf(allowed)}`);
    return null;
  }
  return operator;
}

function flagProblem(flags: string): string | null {
  for (const [i, flag] of [...flags].entries()) {
    if (flag === "g" || flag === "y") return `flag '${flag}' would make the regex stateful; remove it`;
    if (!ALLOWED_REGEX_FLAGS.includes(flag)) return `unknown flag '${flag}'; use ${oneOf([...ALLOWED_REGEX_FLAGS])}`;
    if (flags.indexOf(flag) !== i) return `flag '${flag}' is repeated`;
  }
  return null;
}

function regexFlags(ctx: YamlContext, flagsEntry: MapEntry | undefined): string | null {
  if (flagsEntry === undefined) return DEFAULT_REGEX_FLAGS;
  const flags = ctx.string(flagsEntry.value, "flags", flagsEntry.keyNode);
  if (flags === null) return null;
  let problem = flagProblem(flags);
  if (problem === null) {
    try {
      new RegExp("", flags);
    } catch (err) {
      problem = err instanceof Error ? err.message : String(err);
    }
  }
  if (problem === null) return flags;
  ctx.error(flagsEntry.value, "invalid-regex-flags", `invalid regex flags ${quoted(flags)}: ${problem}`);
  return null;
}

/**
 * A value pasted from a word processor, chat or a macOS/iOS keyboard with "smart quotes":
 * `value: “Invoice”` is, in YAML, the text with those curly quotes in it (only straight quotes
 * quote), so the rule matched only a subject that had them, and nothing said so. Warned
 * about when the value is written without YAML quotes; `"“Invoice”"` says they are meant.
 */
export const TYPOGRAPHIC_QUOTED = /^[“”„‘’‚«»][^]*[“”‘’«»]$/;
/** Longer values are not repeated in the fix the warning suggests. */
const MAX_SHOWN_FIX_CHARS = 80;

function warnTypographicQuotes(ctx: YamlContext, node: Node | null, text: string): void {
  if (!isScalar(node) || node.type !== "PLAIN" || text.length < 2 || !TYPOGRAPHIC_QUOTED.test(text)) return;
  const [straight, kept] = text.length <= MAX_SHOWN_FIX_CHARS ? [` ("${text.slice(1, -1)}")`, ` ("${text}")`] : ["", ""];
  ctx.warn(
    node,
    "typographic-quotes",
    `value ${quoted(text)} is wrapped in typographic quotes, which YAML keeps as part of the value: write it in straight quotes${straight} if they were meant as quoting, or quote it whole${kept} if they are part of it`,
  );
}

function regexValue(ctx: YamlContext, entry: MapEntry, flags: string): ConditionValue | null {
  const source = ctx.string(entry.value, "a regex", entry.keyNode);
  if (source === null) return null;
  warnTypographicQuotes(ctx, entry.value, source);
  if (source.length > MAX_REGEX_SOURCE_CHARS) {
    ctx.error(entry.value, "invalid-regex", `regex longer than ${MAX_REGEX_SOURCE_CHARS} characters`);
    return null;
  }
  try {
    // In NFC as the text it is tested on (matchers.ts): a pattern pasted from a macOS file name is decomposed.
    const normalized = source.normalize("NFC");
    let regex = new RegExp(normalized, flags);
    const escape = unicodeEscapeWithoutU(source, flags);
    if (escape !== null) {
      // Without the u flag JavaScript reads `\p{Script=Hangul}` as the letters "p{Script=Hangul}",
      // which no admin means (PCRE, as in Postfix's pcre tables, needs no flag): compiled with it,
      // and said, so that a rules file written so works, and keeps loading after an upgrade.
      const why = `regex ${quoted(source)} uses ${escape}…}, which JavaScript reads as a Unicode property or code point only with the u flag`;
      try {
        regex = new RegExp(normalized, `${flags}u`);
      } catch (err) {
        ctx.error(entry.value, "invalid-regex", `${why}, and with it the regex is invalid (${err instanceof Error ? err.message : String(err)}): fix it and add flags: iu (or u for case-sensitive)`);
        return null;
      }
      const folded = caseClassUnderI(source, `${flags}u`);
      if (folded !== null) {
        // Refused, as before the u flag was added for it: the default i would make it match both cases.
        ctx.error(entry.value, "invalid-regex", `${why}, and ${quoted(folded)} with the i flag (the default) matches letters of either case: write flags: u`);
        return null;
      }
      ctx.warn(entry.value, "unicode-escape-without-u", `${why}: compiled with it; add flags: iu (or u for case-sensitive) to say so`);
    } else {
      const folded = caseClassUnderI(source, flags);
      if (folded !== null) ctx.warn(entry.value, "case-class-ignores-case", `regex ${quoted(source)} has ${quoted(folded)} with the i flag, so it matches letters of either case: drop i (flags: u) for an upper- or lower-case test`);
    }
    const boundary = asciiBoundaryNextToLetter(source);
    if (boundary !== null) {
      ctx.warn(
        entry.value,
        "ascii-word-boundary",
        `regex ${quoted(source)} has ${quoted(boundary)}: JavaScript's \\b counts only ASCII letters, digits and _ as word characters, so next to a non-ASCII letter it is a boundary only after an ASCII one; write (?<![\\p{L}\\p{N}_]) and (?![\\p{L}\\p{N}_]) with flags: iu`,
      );
    }
    const nested = nestedRepetition(source);
    if (nested !== null) {
      ctx.warn(
        entry.value,
        "slow-regex",
        `regex ${quoted(source)} repeats ${quoted(nested)}, a group whose body repeats too: on hostile text it backtracks for seconds per value (ReDoS), and serve stops evaluating regexes for a message after ${REGEX_BUDGET_MS} ms; repeat only one level (e.g. 'a+' for '(a+)+')`,
      );
    }
    return { kind: "regex", regex };
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    ctx.error(entry.value, "invalid-regex", `invalid regex ${quoted(source)}: ${reason}`);
    return null;
  }
}

function cidrValue(ctx: YamlContext, entry: MapEntry): ConditionValue | null {
  const items = ctx.scalarList(entry.value);
  if (items.length === 0) {
    ctx.error(entry.value ?? entry.keyNode, "invalid-cidr", "in_cidr needs a CIDR or a list of CIDRs, e.g. 192.0.2.0/24");
    return null;
  }
  const ranges: CidrRange[] = [];
  for (const item of items) {
    const text = ctx.string(item, "a CIDR", entry.keyNode);
    if (text === null) continue;
    const range = parseCidrRange(text);
    if (range === null) {
      ctx.error(item, "invalid-cidr", `invalid CIDR ${quoted(text)}; write an address or address/prefix, e.g. 192.0.2.0/24 or 2001:db8::/32`);
      continue;
    }
    if (range.hostBitsSet) ctx.warn(item, "cidr-host-bits", `'${text}' has host bits set; it means ${range.text}`);
    ranges.push(range);
  }
  return ranges.length === items.length ? { kind: "cidr", ranges } : null;
}

function sizeValue(ctx: YamlContext, entry: MapEntry): ConditionValue | null {
  const node = entry.value;
  if (isScalar(node) && typeof node.value === "number" && Number.isSafeInteger(node.value) && node.value >= 0) {
    return { kind: "number", value: node.value };
  }
  const text = isScalar(node) && typeof node.value === "string" ? node.value.trim().toLowerCase() : null;
  const match = text === null ? null : /^(\d+)\s*([kmg]?b?)$/.exec(text);
  const multiplier = match === null ? undefined : SIZE_UNITS[match[2] ?? ""];
  if (match !== null && multiplier !== undefined) {
    const bytes = Number(match[1]) * multiplier;
    if (Number.isSafeInteger(bytes)) return { kind: "number", value: bytes };
  }
  ctx.error(node ?? entry.keyNode, "invalid-value", "size must be a whole number of bytes, or a number with KB, MB or GB (1024-based), e.g. 10MB");
  return null;
}

function boolValue(ctx: YamlContext, entry: MapEntry): ConditionValue | null {
  const node = entry.value;
  if (isScalar(node) && typeof node.value === "boolean") return { kind: "bool", value: node.value };
  if (isScalar(node) && (node.value === "true" || node.value === "false")) return { kind: "bool", value: node.value === "true" };
  ctx.error(node ?? entry.keyNode, "invalid-value", "tls must be compared with true or false");
  return null;
}

function authValue(ctx: YamlContext, entry: MapEntry, field: FieldName): ConditionValue | null {
  const text = ctx.string(entry.value, "value", entry.keyNode);
  if (text === null) return null;
  const result = AUTH_RESULTS.find((r) => r === text.toLowerCase());
  if (result !== undefined) return { kind: "auth", value: result as AuthResult };
  ctx.error(entry.value, "invalid-value", `${quoted(text)} is not a ${field} result; use ${oneOf(AUTH_RESULTS)}`);
  return null;
}

interface ValueContext {
  field: FieldName;
  kind: FieldKind;
  operator: Operator;
  entries: Map<string, MapEntry>;
  map: Node;
}

function conditionValue(ctx: YamlContext, c: ValueContext): ConditionValue | null {
  const valueEntry = c.entries.get("value");
  const flagsEntry = c.entries.get("flags");
  if (flagsEntry !== undefined && c.operator !== "regex") {
    ctx.error(flagsEntry.keyNode, "invalid-key", "flags only apply to operator regex");
    return null;
  }
  if (c.operator === "exists") {
    if (valueEntry === undefined) return { kind: "none" };
    ctx.error(valueEntry.keyNode, "invalid-value", "operator exists takes no value; add not: true to test for absence");
    return null;
  }
  if (valueEntry === undefined || valueEntry.value === null) {
    ctx.error(valueEntry?.keyNode ?? c.map, "missing-value", `condition on '${c.field}' with operator '${c.operator}' needs a value`);
    return null;
  }
  if (isSeq(valueEntry.value) && c.operator !== "in_cidr") {
    ctx.error(valueEntry.value, "invalid-value", "value must be a single value; for alternatives use several conditions with match: any, or a regex");
    return null;
  }
  if (c.operator === "regex") {
    const flags = regexFlags(ctx, flagsEntry);
    return flags === null ? null : regexValue(ctx, valueEntry, flags);
  }
  if (c.operator === "in_cidr") return cidrValue(ctx, valueEntry);
  if (c.kind === "size") return sizeValue(ctx, valueEntry);
  if (c.kind === "bool") return boolValue(ctx, valueEntry);
  if (c.kind === "auth") return authValue(ctx, valueEntry, c.field);
  const text = ctx.string(valueEntry.value, "value", valueEntry.keyNode);
  if (text !== null) warnTypographicQuotes(ctx, valueEntry.value, text);
  if (text !== null && c.kind === "ip" && c.operator === "equals") warnClientIpForm(ctx, valueEntry, text);
  return text === null ? null : { kind: "text", text };
}

/**
 * client_ip is text in serve's form (`::1`, `192.0.2.1` for `::ffff:192.0.2.1`) and equals
 * compares text: an address written another way (`0:0:0:0:0:0:0:1`, mapped) never matched,
 * and nothing said so.
 */
function warnClientIpForm(ctx: YamlContext, entry: MapEntry, text: string): void {
  const form = clientIpForm(text.trim());
  if (form === null || form === text.toLowerCase()) return;
  ctx.warn(entry.value ?? entry.keyNode, "client-ip-form", `client_ip is written as serve sees it, so '${text}' never matches: write ${form} (or use in_cidr)`);
}

/** Validates a condition node; null when it has errors (already reported). */
export function validateCondition(ctx: YamlContext, node: Node | null, at: Node): ConditionSpec | null {
  const map = ctx.asMap(node, "a condition", at);
  if (map === null) return null;
  const errorsBefore = ctx.errorCount;
  const entries = entryMap(ctx.entries(map, CONDITION_KEYS, "a condition"));
  const fieldEntry = entries.get("field");
  const operatorEntry = entries.get("operator");
  if (fieldEntry === undefined) ctx.error(map, "missing-key", "condition has no 'field'");
  if (operatorEntry === undefined) ctx.error(map, "missing-key", "condition has no 'operator'");
  const notEntry = entries.get("not");
  const negate = notEntry === undefined ? false : ctx.boolean(notEntry.value, "not", notEntry.keyNode);
  const field = fieldEntry === undefined ? null : parseField(ctx, fieldEntry);
  if (field === null || operatorEntry === undefined) return null;
  const operator = parseOperator(ctx, operatorEntry, field.field, field.kind);
  if (operator === null) return null;
  const value = conditionValue(ctx, { field: field.field, kind: field.kind, operator, entries, map });
  if (value === null || negate === null || ctx.errorCount > errorsBefore) return null;
  return { field: field.field, fieldKind: field.kind, operator, negate, value, pos: ctx.posOf(map) };
}
