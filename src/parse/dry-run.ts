/**
 * The pure half of `mailgw test` (dry run): envelope defaults taken from the message's
 * headers, and the decision + per-rule trace rendered as text or JSON. No I/O; the command
 * (src/cli/test.ts) reads files and prints. Trusts the trace it is given (from classify).
 */
import type { ClassifyResult, ConditionTrace, RuleSet, RuleTrace, TraceValue } from "../rules/types.ts";
import { REGEX_BUDGET_MS } from "../rules/matchers.ts";
import { canonicalSender } from "../smtp/recipient-policy.ts";
import type { Envelope, MessageFacts } from "../types.ts";
import { terminalSafeJson } from "../log/terminal-json.ts";
import { shownWebhookUrl } from "../act/redact-url.ts";
import { parseGaveUp } from "./header-readings.ts";

/** Envelope flags of `mailgw test`; an absent from/to means "take it from the headers". */
export interface EnvelopeFlags {
  from: string | null;
  to: string[];
  clientIp: string;
  helo: string;
  tls: boolean;
}

function stripAngles(address: string): string {
  const trimmed = address.trim();
  return trimmed.startsWith("<") && trimmed.endsWith(">") ? trimmed.slice(1, -1) : trimmed;
}

/** The envelope given on the command line, before header defaults are known. */
export function flagEnvelope(flags: EnvelopeFlags): Envelope {
  return {
    // As serve keeps envelope addresses: domain lower-cased in ASCII form, needless quotes dropped.
    mailFrom: flags.from === null ? "" : canonicalSender(stripAngles(flags.from)),
    rcptTo: flags.to.map((to) => canonicalSender(stripAngles(to))),
    clientIp: flags.clientIp,
    helo: flags.helo,
    tls: flags.tls,
  };
}

/**
 * The envelope recipients a dry run takes from the header To (no --to): its addresses. A bare
 * local part there (`To: a@company.com, eryq`, which the `to` fact lists as Python does) is no
 * recipient a sending MTA could have given, and as one it drew a "serve would refuse" note.
 * Nor is an address with a NUL in it (the `to` fact's reading that keeps it): no client can
 * send a NUL in RCPT TO, serve refuses it, and a sender that reads the header as C strings
 * (`sendmail -t`) sends the text before the NUL, which the `to` fact lists too.
 */
export function headerRecipients(to: readonly string[]): string[] {
  return to.filter((address) => address.includes("@") && !address.includes("\0"));
}

/**
 * The envelope sender a dry run takes from the header From (no --from): its first address, or,
 * when that has a NUL in it (`From: CEO <ceo@company.com<NUL>.evil.example>`), the first one
 * without (the text before the NUL: header-facts.ts). serve refuses a NUL in MAIL FROM, so a
 * `mail_from` rule must not be tried on a value serve never classifies with.
 */
export function headerSender(facts: Pick<MessageFacts, "from" | "fromAll">): string {
  const address = facts.from.includes("\0") ? (facts.fromAll.find((a) => !a.includes("\0")) ?? "") : facts.from;
  // In the form serve keeps an envelope sender (ASCII domain), as --from is.
  return address === "" ? "" : canonicalSender(address);
}

/** Fills envelope facts the flags left out from the header From / To (SPEC §1). */
export function applyHeaderDefaults(facts: MessageFacts, flags: EnvelopeFlags): MessageFacts {
  return {
    ...facts,
    mailFrom: flags.from === null ? headerSender(facts) : facts.mailFrom,
    rcpt: flags.to.length === 0 ? headerRecipients(facts.to) : facts.rcpt,
  };
}

/** Where the dry run's envelope came from: the flags, or (absent) the message's header. */
export interface EnvelopeSource {
  mailFrom: "flag" | "header";
  rcpt: "flag" | "header";
  /** A header address taken had a NUL: the text before it was taken. */
  nulCut: boolean;
}

/** The line under `envelope:` that says which of it is a guess from the header; null when all was given. */
function envelopeSourceNote(source: EnvelopeSource | undefined): string | null {
  if (!source) return null;
  const guessed = [
    ...(source.mailFrom === "header" ? [{ fact: "mail_from", field: "From", flag: "--from" }] : []),
    ...(source.rcpt === "header" ? [{ fact: "rcpt", field: "To", flag: "--to" }] : []),
  ];
  if (guessed.length === 0) return null;
  const list = (key: "fact" | "field" | "flag", sep: string) => guessed.map((g) => g[key]).join(sep);
  const nul = source.nulCut ? "; a header address with a NUL is taken as its text before the NUL (no client can send a NUL)" : "";
  return `          ${list("fact", " and ")} taken from the header ${list("field", "/")} (no ${list("flag", ", no ")}): serve classifies with the envelope the client sends; give ${list("flag", " and ")} to check that${nul}`;
}

function showValue(value: TraceValue): string {
  if (value === null) return "(none)";
  if (Array.isArray(value)) return value.length === 0 ? "[] (none)" : `[${value.map((v) => JSON.stringify(v)).join(", ")}]`;
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

function showCondition(condition: ConditionTrace): string {
  const not = condition.not ? "not " : "";
  if (condition.operator === "exists") return `${not}${condition.field} exists`;
  const expected = condition.operator === "regex" ? condition.expected : JSON.stringify(condition.expected);
  return `${not}${condition.field} ${condition.operator} ${expected}`;
}

function showRule(rule: RuleTrace): string[] {
  const how = rule.match === "any" ? "any condition" : "all conditions";
  const lines = [`  ${rule.matched ? "MATCH" : "no   "} ${rule.rule} (priority ${rule.priority}, ${how})`];
  for (const condition of rule.conditions) {
    lines.push(`        ${condition.matched ? "yes" : "no "}  ${showCondition(condition)}   actual: ${showValue(condition.actual)}`);
  }
  return lines;
}

function showDecision(result: ClassifyResult): string {
  const d = result.decision;
  const parts = [`decision: ${d.action}`, `rule=${d.rule ?? "(default)"}`, `category=${d.category}`];
  if (d.action === "forward") parts.push(`forward_to=${d.forwardTo.join(",")}`);
  // Redacted as in the logs: this output is pasted into tickets; the rules file has the URL.
  if (d.action === "webhook" && d.url) parts.push(`url=${shownWebhookUrl(d.url)}`);
  if (d.action === "reject") parts.push(`reply="550 5.7.1 ${d.rejectMessage ?? "Message rejected"}"`);
  if (d.archive && d.action !== "archive") parts.push("+archive");
  return parts.join("  ");
}

export interface DryRunReport {
  source: string;
  /** How the file was read as an SMTP client would send it (LF → CRLF, an mbox `From ` line left out). */
  inputNotes?: readonly string[];
  facts: MessageFacts;
  rules: RuleSet;
  result: ClassifyResult;
  /** Authentication results given on the command line (a dry run checks none itself). */
  authGiven?: readonly string[];
  /** Envelope recipients `serve` would refuse at RCPT (not in `domains`), with the reply; `facts.rcpt` holds the others (all when none is left). */
  refusedRecipients?: readonly RefusedRecipient[];
  /** serve's reply when it would refuse the whole message after DATA whatever the rules say (mail loop). */
  refusedMessage?: string | null;
  /** serve's reply to the MAIL FROM, when it would refuse the envelope sender's syntax. */
  refusedSender?: string | null;
  /** serve's reply to a forward its relay would refuse as a mail loop (after the rules), or null. */
  refusedForward?: string | null;
  /** Which envelope values were given and which taken from the header. */
  envelopeSource?: EnvelopeSource;
}

export interface RefusedRecipient {
  address: string;
  reply: string;
}


/** The spf/dkim/dmarc facts, and where they came from. */
function showAuth(report: DryRunReport): string {
  const f = report.facts;
  const given = report.authGiven ?? [];
  const values = (["spf", "dkim", "dmarc"] as const).map((k) => `${k}=${f[k]}${given.includes(k) ? " (given)" : ""}`).join(" ");
  const missing = given.length < 3 ? "   not checked in a dry run: `none` unless set with --spf, --dkim, --dmarc" : "";
  return `auth:     ${values}${missing}`;
}

/** Human-readable dry run: message, envelope, every rule evaluated with its conditions, decision. */
export function renderText(report: DryRunReport): string {
  const { facts, rules, result } = report;
  const lines = [
    `message:  ${report.source} (${facts.size} bytes with mailgw's Received: header)${facts.parseError ? ` — ${parseGaveUp(facts.parseError) ? "parsed partially" : "parsed in full"}: ${facts.parseError}` : ""}`,
    ...(report.inputNotes ?? []).map((n) => `          ${n}`),
    `subject:  ${JSON.stringify(facts.subject)}  from: ${facts.from || "(none)"}`,
    `envelope: mail_from=<${facts.mailFrom}> rcpt=${facts.rcpt.map((r) => `<${r}>`).join(",") || "(none)"} client_ip=${facts.clientIp} helo=${facts.helo} tls=${facts.tls}`,
    ...[envelopeSourceNote(report.envelopeSource)].filter((n): n is string => n !== null),
    showAuth(report),
    `rules:    ${rules.fileName} (version ${rules.version}, ${rules.rules.length} rules; first match wins)`,
    "",
  ];
  for (const rule of result.trace) lines.push(...showRule(rule));
  if (result.decision.rule === null) lines.push(`  (no rule matched: default applies)`);
  lines.push("", showDecision(result));
  if (report.refusedSender) lines.push(`note:     serve would refuse MAIL FROM <${facts.mailFrom}> (${report.refusedSender}): the message would not be accepted at all`);
  const refused = report.refusedRecipients ?? [];
  if (refused.length > 0) {
    const all = facts.rcpt.every((address) => refused.some((r) => r.address === address));
    lines.push(`note:     serve would refuse at RCPT ${refused.map((r) => `<${r.address}> (${r.reply})`).join(", ")}${all ? ": with no recipient left, the message would not be accepted at all" : ""}`);
  }
  if (report.refusedMessage) lines.push(`note:     serve would refuse this message after DATA, before the rules: ${report.refusedMessage}`);
  if (report.refusedForward) lines.push(`note:     serve would refuse this forward after DATA, as its relay would refuse it as a mail loop (too many Received: lines): ${report.refusedForward}`);
  if (result.unevaluated) {
    lines.push(`note:     rule regexes took more than ${REGEX_BUDGET_MS} ms on this message: ${result.unevaluated.join(", ")} not evaluated (no match); check them with \`mailgw rules lint\``);
  }
  return `${terminalSafe(lines.join("\n"))}\n`;
}

/**
 * What a terminal would act on or hide instead of showing: C0/C1 controls but the line feed
 * (ESC sequences), bidi overrides and isolates, zero-width and line/paragraph separators.
 */
const UNSAFE_IN_TERMINAL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g;

/**
 * The text report is read in the admin's terminal, often for a suspicious message: a From or To
 * address (shown bare, and as the default envelope) carried its ESC sequences there as they
 * were. They are written as `\uXXXX`, as the log does.
 */
function terminalSafe(text: string): string {
  return text.replace(UNSAFE_IN_TERMINAL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** Characters of body text included in --json output. */
const JSON_BODY_PREVIEW_CHARS = 500;

/** Machine-readable dry run (`--json`); often read in a terminal too, so terminal-safe like the text report. */
export function renderJson(report: DryRunReport): string {
  const { facts, rules, result } = report;
  const { headers, body, ...scalarFacts } = facts;
  return `${terminalSafeJson(
    {
      source: report.source,
      inputNotes: report.inputNotes ?? [],
      decision: { ...result.decision, url: result.decision.url === null ? null : shownWebhookUrl(result.decision.url) },
      trace: result.trace,
      rules: { file: rules.fileName, version: rules.version, count: rules.rules.length },
      // A dry run does no DNS: spf/dkim/dmarc are the given ones, else "none".
      authChecked: false,
      authGiven: report.authGiven ?? [],
      envelopeSource: report.envelopeSource ?? { mailFrom: "flag", rcpt: "flag", nulCut: false },
      refusedRecipients: report.refusedRecipients ?? [],
      refusedMessage: report.refusedMessage ?? null,
      refusedSender: report.refusedSender ?? null,
      refusedForward: report.refusedForward ?? null,
      unevaluatedRules: result.unevaluated ?? [],
      facts: {
        ...scalarFacts,
        parseError: facts.parseError ?? null,
        bodyPreview: body.slice(0, JSON_BODY_PREVIEW_CHARS),
        headers: Object.fromEntries(headers),
      },
    },
    2,
  )}\n`;
}
