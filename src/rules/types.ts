/**
 * Types of the rules engine (SPEC §3): what a rules file compiles to, what `classify`
 * returns, and what lint reports. Everything here is plain data plus precompiled
 * matcher functions; nothing touches the file system or the clock.
 *
 * Trust: a RuleSet only exists after validation succeeded, so every field, operator,
 * regex and CIDR inside it is known good. Consumers must treat it as immutable
 * (rules and decisions are frozen; a mutation attempt throws in strict mode).
 */
import type { Action, AuthResult, Decision, MessageFacts } from "../types.ts";

export type { Action, AuthResult, Decision, MessageFacts };

/** Condition fields with a fixed name; `header:<Name>` is the open-ended one. */
export type FixedField =
  | "subject"
  | "from"
  | "from_name"
  | "to"
  | "cc"
  | "rcpt"
  | "mail_from"
  | "body"
  | "attachment"
  | "attachment_type"
  | "size"
  | "client_ip"
  | "helo"
  | "tls"
  | "spf"
  | "dkim"
  | "dmarc";

export type FieldName = FixedField | `header:${string}`;

export type Operator = "equals" | "contains" | "starts_with" | "ends_with" | "regex" | "in_cidr" | "gt" | "lt" | "exists";

/** How a rule combines its conditions. */
export type MatchMode = "all" | "any";

export type Severity = "error" | "warning";

/** One lint finding, pointing at the offending key or value (1-based line and column). */
export interface Diagnostic {
  severity: Severity;
  file: string;
  line: number;
  col: number;
  message: string;
  /** Stable machine-readable identifier, e.g. `unknown-field`, `invalid-regex`. */
  code: string;
}

/** Where a rule or condition was written in its file. */
export interface SourcePos {
  line: number;
  col: number;
}

/** A value as shown in a trace: strings are truncated, lists capped (see classify.ts). */
export type TraceValue = string | number | boolean | null | readonly string[];

/**
 * Per-message scratch space for one `classify` call: lower-cased field values are
 * computed at most once per message and shared by every condition that needs them.
 */
export interface EvalScope {
  readonly facts: MessageFacts;
  /** Indexed by `CompiledCondition.slot`; undefined = not computed yet. */
  readonly lowered: (string | readonly string[] | undefined)[];
  /** Parsed client address; undefined = not parsed yet, null = not an IP address. */
  clientIp: ParsedClientIp | null | undefined;
  /** Milliseconds spent in rule regexes for this message so far (see REGEX_BUDGET_MS). */
  regexMs: number;
}

/** A client address as numbers, so CIDR tests are integer comparisons. */
export interface ParsedClientIp {
  /** Set for IPv4 and IPv4-mapped IPv6 addresses. */
  v4: bigint | null;
  /** IPv6 form (IPv4 addresses as ::ffff:a.b.c.d). */
  v6: bigint;
}

export interface CompiledCondition {
  /** Field as written, header names lower-cased (`header:x-spam-flag`). */
  readonly field: FieldName;
  readonly operator: Operator;
  readonly negate: boolean;
  /** The expected value for traces and `rules list` (regex as /source/flags). */
  readonly expected: string;
  /** True when the condition holds for every message (used for shadowing warnings). */
  readonly alwaysTrue: boolean;
  /** The raw test, before `not` is applied. Pure; may fill the scope's caches. */
  readonly test: (scope: EvalScope) => boolean;
  /** The field's actual value(s) for a trace. */
  readonly actual: (facts: MessageFacts) => TraceValue;
  readonly pos: SourcePos;
}

/** What the untraced evaluation of a rule runs: a test, and whether `not` inverts it. */
export interface RuleCheck {
  readonly test: (scope: EvalScope) => boolean;
  readonly negate: boolean;
}

export interface CompiledRule {
  readonly name: string;
  readonly priority: number;
  readonly category: string;
  readonly action: Action;
  readonly match: MatchMode;
  readonly conditions: readonly CompiledCondition[];
  /** The same as `conditions` for untraced classification, with equals runs merged (hot-path.ts). */
  readonly checks: readonly RuleCheck[];
  /** The frozen decision returned when this rule matches. */
  readonly decision: Decision;
  /** Position of the rule in its file (its first key). */
  readonly pos: SourcePos;
  /** The rule's index in the file, for tie-breaking and messages. */
  readonly fileIndex: number;
}

export interface RuleSet {
  readonly fileName: string;
  /** Recipient domains accepted by the gateway, lower-case ASCII (IDNs as punycode). */
  readonly domains: readonly string[];
  /** Decision when no rule matches (rule: null). Frozen. */
  readonly default: Decision;
  /** Rules in evaluation order: priority descending, ties in file order. */
  readonly rules: readonly CompiledRule[];
  /** First 12 hex digits of the SHA-256 of the file bytes. */
  readonly version: string;
  readonly loadedAt: Date;
  /** Number of per-message cache slots the conditions use (see EvalScope.lowered). */
  readonly slotCount: number;
}

export interface ConditionTrace {
  field: FieldName;
  operator: Operator;
  not: boolean;
  expected: string;
  actual: TraceValue;
  /** Result after `not` was applied. */
  matched: boolean;
}

export interface RuleTrace {
  rule: string;
  priority: number;
  match: MatchMode;
  matched: boolean;
  conditions: ConditionTrace[];
}

export interface ClassifyResult {
  decision: Decision;
  /** The rules evaluated, in order, up to and including the one that matched. */
  trace: RuleTrace[];
  /**
   * Rules left unmatched because the message's regex time budget was used up before one of
   * their regex conditions could run (REGEX_BUDGET_MS); absent when none.
   */
  unevaluated?: string[];
}

export interface ClassifyOptions {
  /** Build the per-rule trace (default true). The SMTP hot path may pass false. */
  trace?: boolean;
}

/** Result of loading or parsing a rules file: compiled rules plus warnings, or diagnostics. */
export type ParseResult =
  | { ok: true; rules: RuleSet; diagnostics: Diagnostic[] }
  | { ok: false; diagnostics: Diagnostic[] };
