/**
 * Turns one validated condition into a CompiledCondition: a `test` closure that reads
 * the message facts through the per-message scope (lower-cased values computed once per
 * message and field, client address parsed once) and an `actual` reader for traces.
 * Everything that can be prepared ahead (lower-cased expected text, RegExp objects,
 * CIDR bounds) is prepared here, once per rules load. Pure; the inputs were validated.
 */
import { asciiDomainForm } from "./address.ts";
import { coversEverything, type CidrRange, ipInRanges, parseClientIp } from "./cidr.ts";
import { ADDRESS_FIELDS, AUTH_READERS, listReader, loweredList, loweredText, lowerCase, nfc, regexList, regexText, textReader, textReadings } from "./field-values.ts";
import type { FieldKind } from "./schema.ts";
import type {
  AuthResult,
  CompiledCondition,
  EvalScope,
  FieldName,
  MessageFacts,
  Operator,
  ParsedClientIp,
  SourcePos,
  TraceValue,
} from "./types.ts";

/**
 * Time all the regexes of the rules may take on one message together. Classification runs on
 * the event loop, and a pattern that backtracks catastrophically (`(a+)+$` against "aaaa…!")
 * costs up to about a second per value before JavaScriptCore gives up on it: a message with
 * 1000 attachment names (or To addresses, or headers) would stall every session, the stats
 * server and /healthz for many minutes. Past the budget, no further regex runs for that
 * message (RegexBudgetExceeded); the rules that needed one do not match.
 */
export const REGEX_BUDGET_MS = 250;

/** Thrown by a regex condition once the message's REGEX_BUDGET_MS is used up; classify catches it. */
export class RegexBudgetExceeded extends Error {
  constructor() {
    super(`rule regexes took more than ${REGEX_BUDGET_MS} ms on this message`);
  }
}

function budgetedTest(regex: RegExp, value: string, scope: EvalScope): boolean {
  if (scope.regexMs > REGEX_BUDGET_MS) throw new RegexBudgetExceeded();
  const start = performance.now();
  try {
    return regex.test(value);
  } finally {
    scope.regexMs += performance.now() - start;
  }
}

/** Trace values longer than this are cut: a trace must stay printable for a 10 MB body. */
export const MAX_TRACE_VALUE_CHARS = 200;
/** Multi-valued fields show at most this many values in a trace (1000 recipients...). */
export const MAX_TRACE_VALUES = 20;

export type ConditionValue =
  | { kind: "text"; text: string }
  | { kind: "regex"; regex: RegExp }
  | { kind: "cidr"; ranges: CidrRange[] }
  | { kind: "number"; value: number }
  | { kind: "bool"; value: boolean }
  | { kind: "auth"; value: AuthResult }
  | { kind: "none" };

export interface ConditionSpec {
  field: FieldName;
  fieldKind: FieldKind;
  operator: Operator;
  negate: boolean;
  value: ConditionValue;
  pos: SourcePos;
}

/** Hands out one cache slot per distinct field, shared by all rules of a RuleSet. */
export class SlotAllocator {
  private readonly slots = new Map<string, number>();
  slotFor(field: string): number {
    let slot = this.slots.get(field);
    if (slot === undefined) {
      slot = this.slots.size;
      this.slots.set(field, slot);
    }
    return slot;
  }
  get count(): number {
    return this.slots.size;
  }
}

function truncate(value: string): string {
  return value.length > MAX_TRACE_VALUE_CHARS ? `${value.slice(0, MAX_TRACE_VALUE_CHARS)}…` : value;
}

function traceList(values: readonly string[]): readonly string[] {
  const short = values.length <= MAX_TRACE_VALUES && values.every((v) => v.length <= MAX_TRACE_VALUE_CHARS);
  if (short) return values;
  const shown = values.slice(0, MAX_TRACE_VALUES).map(truncate);
  if (values.length > MAX_TRACE_VALUES) shown.push(`… ${values.length - MAX_TRACE_VALUES} more`);
  return shown;
}

type StringPredicate = (value: string) => boolean;

/** Case-insensitive comparison against an already lower-cased value. */
function textPredicate(operator: Operator, expectedLower: string): StringPredicate {
  switch (operator) {
    case "equals":
      return (v) => v === expectedLower;
    case "contains":
      return (v) => v.includes(expectedLower);
    case "starts_with":
      return (v) => v.startsWith(expectedLower);
    case "ends_with":
      return (v) => v.endsWith(expectedLower);
    default:
      throw new Error(`${operator} is not a text comparison`);
  }
}

/**
 * textPredicate for the condition's value; on an address field an IDN in the value (`@bücher.example`)
 * is also tried in its ASCII form. Both forms, as a value without `@` (`jörg`) may be a local
 * part as well as a domain.
 */
function valuePredicate(spec: ConditionSpec, text: string): StringPredicate {
  const lower = lowerCase(nfc(text));
  const ascii = ADDRESS_FIELDS.has(spec.field) ? lowerCase(asciiDomainForm(nfc(text))) : lower;
  const predicate = textPredicate(spec.operator, lower);
  if (ascii === lower) return predicate;
  const asciiPredicate = textPredicate(spec.operator, ascii);
  return (v) => predicate(v) || asciiPredicate(v);
}

function anyOf(values: readonly string[], predicate: StringPredicate): boolean {
  for (let i = 0; i < values.length; i++) {
    if (predicate(values[i] as string)) return true;
  }
  return false;
}

function clientIpOf(scope: EvalScope): ParsedClientIp | null {
  if (scope.clientIp === undefined) scope.clientIp = parseClientIp(scope.facts.clientIp);
  return scope.clientIp;
}

/**
 * True when the regex matches every string: it matches "" and uses no assertion other
 * than `^` (so its empty match also succeeds at position 0 of any input). Conservative:
 * `$`, `\b`, lookarounds or an escaped `$` make it "not provably universal".
 */
export function regexMatchesEverything(regex: RegExp): boolean {
  if (/\$|\\[bB]|\(\?<?[=!]/.test(regex.source)) return false;
  return new RegExp(regex.source, regex.flags).test("");
}

/** Some character that is not whitespace: what `exists` asks of a text field. */
const NOT_WHITESPACE = /\S/;

interface Test {
  test: (scope: EvalScope) => boolean;
  alwaysTrue: boolean;
}

function singleTextTest(spec: ConditionSpec, slot: number): Test {
  const read = textReader(spec.field);
  const { value, operator } = spec;
  // Whitespace is not content: an "empty" body is usually a blank line (`\n`), as MUAs send it.
  if (operator === "exists") return { test: (s) => NOT_WHITESPACE.test(read(s.facts)), alwaysTrue: false };
  if (operator === "in_cidr" && value.kind === "cidr") {
    const ranges = value.ranges;
    const test = (s: EvalScope): boolean => {
      const ip = clientIpOf(s);
      return ip !== null && ipInRanges(ip, ranges);
    };
    return { test, alwaysTrue: coversEverything(ranges) };
  }
  if (value.kind === "regex") {
    const regex = value.regex;
    const forms = regexText(spec.field, slot);
    return { test: (s) => anyOf(forms(s), (v) => budgetedTest(regex, v, s)), alwaysTrue: regexMatchesEverything(regex) };
  }
  if (value.kind !== "text") throw new Error(`unexpected value for ${spec.field} ${operator}`);
  const expected = lowerCase(value.text);
  const predicate = valuePredicate(spec, value.text);
  const lowered = loweredText(spec.field, slot);
  return { test: (s) => anyOf(lowered(s), predicate), alwaysTrue: expected === "" && operator !== "equals" };
}

function listTest(spec: ConditionSpec, slot: number): Test {
  const read = listReader(spec.field);
  const { value, operator } = spec;
  if (operator === "exists") return { test: (s) => read(s.facts).length > 0, alwaysTrue: false };
  if (value.kind === "regex") {
    const regex = value.regex;
    const values = regexList(spec.field, slot);
    return { test: (s) => anyOf(values(s), (v) => budgetedTest(regex, v, s)), alwaysTrue: false };
  }
  if (value.kind !== "text") throw new Error(`unexpected value for ${spec.field} ${operator}`);
  const predicate = valuePredicate(spec, value.text);
  const lowered = loweredList(spec.field, slot);
  return { test: (s) => anyOf(lowered(s), predicate), alwaysTrue: false };
}

/** True for `equals` with a text value and no `not`: what equalsAnyTest can merge. */
export function isPlainEquals(spec: ConditionSpec): boolean {
  return spec.operator === "equals" && !spec.negate && spec.value.kind === "text" && (spec.fieldKind === "text" || spec.fieldKind === "ip" || spec.fieldKind === "list");
}

/**
 * One test equivalent to `equals` conditions (isPlainEquals, all on the same field) joined by
 * `match: any`: a Set lookup instead of one comparison per condition. A blocklist of thousands
 * of senders written as such a rule otherwise costs a comparison per entry on every message.
 * The Set holds each value in the forms valuePredicate compares (lower-cased, and an address's
 * IDN domain in ASCII form).
 */
export function equalsAnyTest(specs: readonly ConditionSpec[], slots: SlotAllocator): (scope: EvalScope) => boolean {
  const first = specs[0];
  if (first === undefined) throw new Error("equalsAnyTest needs a condition");
  const expected = new Set<string>();
  for (const spec of specs) {
    if (spec.value.kind !== "text") throw new Error(`unexpected value for ${spec.field} ${spec.operator}`);
    expected.add(lowerCase(nfc(spec.value.text)));
    if (ADDRESS_FIELDS.has(spec.field)) expected.add(lowerCase(asciiDomainForm(nfc(spec.value.text))));
  }
  const slot = slots.slotFor(first.field);
  if (first.fieldKind === "list") {
    const lowered = loweredList(first.field, slot);
    const has = (v: string): boolean => expected.has(v);
    return (s) => anyOf(lowered(s), has);
  }
  const lowered = loweredText(first.field, slot);
  return (s) => anyOf(lowered(s), (v) => expected.has(v));
}

function scalarTest(spec: ConditionSpec): Test {
  const { value, operator, field } = spec;
  if (value.kind === "number") {
    const n = value.value;
    if (operator === "gt") return { test: (s) => s.facts.size > n, alwaysTrue: false };
    if (operator === "lt") return { test: (s) => s.facts.size < n, alwaysTrue: false };
    return { test: (s) => s.facts.size === n, alwaysTrue: false };
  }
  if (value.kind === "bool") {
    const b = value.value;
    return { test: (s) => s.facts.tls === b, alwaysTrue: false };
  }
  const read = AUTH_READERS[field];
  if (value.kind === "auth" && read !== undefined) {
    const expected = value.value;
    return { test: (s) => read(s.facts) === expected, alwaysTrue: false };
  }
  throw new Error(`unexpected value for ${field} ${operator}`);
}

function actualReader(spec: ConditionSpec): (facts: MessageFacts) => TraceValue {
  const { field, fieldKind } = spec;
  switch (fieldKind) {
    case "text":
    case "ip": {
      // A subject read two ways (textReadings) shows both.
      const read = textReadings(field);
      return (f) => {
        const readings = read(f);
        return readings.length === 1 ? truncate(readings[0] ?? "") : traceList(readings);
      };
    }
    case "list": {
      const read = listReader(field);
      if (field.startsWith("header:")) {
        const name = field.slice("header:".length);
        return (f) => (f.headers.has(name) ? traceList(read(f)) : null);
      }
      return (f) => traceList(read(f));
    }
    case "size":
      return (f) => f.size;
    case "bool":
      return (f) => f.tls;
    case "auth": {
      const read = AUTH_READERS[field];
      return (f) => (read === undefined ? null : read(f));
    }
  }
}

function expectedText(value: ConditionValue): string {
  switch (value.kind) {
    case "text":
      return value.text;
    case "regex":
      return `/${value.regex.source}/${value.regex.flags}`;
    case "cidr":
      return value.ranges.map((r) => r.text).join(", ");
    case "number":
    case "bool":
    case "auth":
      return String(value.value);
    case "none":
      return "";
  }
}

export function compileCondition(spec: ConditionSpec, slots: SlotAllocator): CompiledCondition {
  // A regex reads the field as sent and in NFC, not lower-cased: a slot of its own (no field name has a space).
  const slot = slots.slotFor(spec.value.kind === "regex" ? `regex ${spec.field}` : spec.field);
  const kind = spec.fieldKind;
  const raw = kind === "text" || kind === "ip" ? singleTextTest(spec, slot) : kind === "list" ? listTest(spec, slot) : scalarTest(spec);
  return Object.freeze({
    field: spec.field,
    operator: spec.operator,
    negate: spec.negate,
    expected: expectedText(spec.value),
    alwaysTrue: raw.alwaysTrue && !spec.negate,
    test: raw.test,
    actual: actualReader(spec),
    pos: spec.pos,
  });
}
