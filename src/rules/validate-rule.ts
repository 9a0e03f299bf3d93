/**
 * Validates one rule (or the `default:` decision) of a rules file: name, priority,
 * category, action and its targets (forward_to, url, reject_message, archive), match
 * mode and conditions. Produces a RuleDraft that keeps the YAML nodes needed for the
 * file-wide checks (duplicate names, shadowing, forwarding loops) done in validate.ts.
 * Reports every problem at its key or value; returns null when the rule has errors.
 */
import { isScalar, type Node, type YAMLMap } from "yaml";
import { asciiDomainForm, hasBareIpv6Host, isWebhookUrl, normalizeMailbox } from "./address.ts";
import { redactUrlText } from "../act/redact-url.ts";
import type { ConditionSpec } from "./matchers.ts";
import {
  ACTIONS,
  DEFAULT_KEYS,
  MAX_CONDITIONS_PER_RULE,
  MAX_NAME_CHARS,
  MAX_REJECT_MESSAGE_CHARS,
  RULE_KEYS,
  RULE_NAME_PATTERN,
  oneOf,
  suggestion,
  quoted,
} from "./schema.ts";
import type { Action, MatchMode, SourcePos } from "./types.ts";
import { validateCondition } from "./validate-condition.ts";
import { entryMap, type MapEntry, type YamlContext } from "./yaml-context.ts";

/** Printable ASCII only: the text goes verbatim into an SMTP reply line (no CR/LF injection). */
const REJECT_MESSAGE_PATTERN = /^[\x20-\x7e]+$/;
/** Categories are free text for humans, but no control characters (logs, metrics, HTML). */
const CATEGORY_PATTERN = /^[^\p{Cc}]+$/u;

export interface ForwardTarget {
  address: string;
  node: Node;
}

export interface ActionFields {
  action: Action;
  category: string | null;
  forwardTo: ForwardTarget[];
  url: string | null;
  rejectMessage: string | null;
  archive: boolean;
}

export interface RuleDraft {
  name: string;
  nameNode: Node;
  priority: number;
  match: MatchMode;
  loopOk: boolean;
  conditions: ConditionSpec[];
  fields: ActionFields;
  pos: SourcePos;
  fileIndex: number;
}

function parseAction(ctx: YamlContext, entry: MapEntry | undefined, fallback: Action | null, map: YAMLMap): Action | null {
  if (entry === undefined) {
    if (fallback === null) ctx.error(map, "missing-key", `rule has no 'action'; use ${oneOf(ACTIONS)}`);
    return fallback;
  }
  const text = ctx.string(entry.value, "action", entry.keyNode);
  if (text === null) return null;
  const action = ACTIONS.find((a) => a === text);
  if (action === undefined) ctx.error(entry.value, "unknown-action", `unknown action ${quoted(text)}${suggestion(text, ACTIONS)}; actions: ${oneOf(ACTIONS)}`);
  return action ?? null;
}

function parseForwardTo(ctx: YamlContext, entry: MapEntry | undefined, actionNode: Node | null): ForwardTarget[] {
  const items = entry === undefined ? [] : ctx.scalarList(entry.value);
  if (items.length === 0) {
    ctx.error(entry?.value ?? entry?.keyNode ?? actionNode, "missing-forward-to", "action forward needs forward_to: an address or a list of addresses");
    return [];
  }
  const targets: ForwardTarget[] = [];
  /** Each address in its relayed form (domain as A-label), lower-cased → as first written. */
  const seen = new Map<string, string>();
  for (const item of items) {
    const text = ctx.string(item, "a forward_to address", entry?.keyNode ?? null);
    if (text === null) continue;
    const address = normalizeMailbox(text.trim());
    if (address === null) {
      ctx.error(item, "invalid-address", `invalid address ${quoted(text)} in forward_to; write user@example.com (no %, !, quotes or IP literals)`);
      continue;
    }
    // Listed twice, it went out as two RCPT TO of one transaction: a relay that does not merge
    // them (smtp-server, Haraka, some providers) delivers two copies. The same address again is
    // dropped; one differing only in the case of its local part is kept (RFC 5321 lets a server
    // tell them apart) but warned about, as nearly every mailbox server takes them as one.
    const relayed = asciiDomainForm(address);
    const first = seen.get(relayed.toLowerCase());
    if (first === undefined) {
      seen.set(relayed.toLowerCase(), relayed);
      targets.push({ address, node: item });
    } else if (first === relayed) {
      ctx.warn(item, "duplicate-forward-to", `forward_to lists ${quoted(text)} again (as '${first}' before); it gets one copy`);
    } else {
      ctx.warn(item, "duplicate-forward-to", `forward_to lists ${quoted(text)} and '${first}', which differ only in case: most mailbox servers take them as one mailbox, which then gets two copies`);
      targets.push({ address, node: item });
    }
  }
  return targets;
}

function parseRejectMessage(ctx: YamlContext, entry: MapEntry): string | null {
  const text = ctx.string(entry.value, "reject_message", entry.keyNode);
  if (text === null) return null;
  if (text.length <= MAX_REJECT_MESSAGE_CHARS && REJECT_MESSAGE_PATTERN.test(text)) return text;
  ctx.error(entry.value, "invalid-value", `reject_message must be 1 to ${MAX_REJECT_MESSAGE_CHARS} printable ASCII characters (it is sent in the SMTP reply)`);
  return null;
}

function parseCategory(ctx: YamlContext, entry: MapEntry | undefined): string | null {
  if (entry === undefined) return null;
  const text = ctx.string(entry.value, "category", entry.keyNode);
  if (text === null) return null;
  if (text.length <= MAX_NAME_CHARS && CATEGORY_PATTERN.test(text)) return text;
  ctx.error(entry.value, "invalid-value", `category must be 1 to ${MAX_NAME_CHARS} characters without control characters`);
  return null;
}

/** Action and targets, shared by rules and `default:`. `fallback` = action when none given. */
export function parseActionFields(ctx: YamlContext, entries: Map<string, MapEntry>, map: YAMLMap, fallback: Action | null): ActionFields | null {
  const errorsBefore = ctx.errorCount;
  const actionEntry = entries.get("action");
  const action = parseAction(ctx, actionEntry, fallback, map);
  const category = parseCategory(ctx, entries.get("category"));
  if (action === null) return null;
  const actionNode = actionEntry?.value ?? map;
  const forwardEntry = entries.get("forward_to");
  const forwardTo = action === "forward" ? parseForwardTo(ctx, forwardEntry, actionNode) : [];
  if (action !== "forward" && forwardEntry) ctx.warn(forwardEntry.keyNode, "ignored-key", `forward_to is ignored with action ${action}`);
  const urlEntry = entries.get("url");
  let url: string | null = null;
  if (action === "webhook") {
    if (urlEntry === undefined) ctx.error(actionNode, "missing-url", "action webhook needs url: https://…");
    else {
      url = ctx.string(urlEntry.value, "url", urlEntry.keyNode);
      if (url !== null && !isWebhookUrl(url)) {
        const fix = hasBareIpv6Host(url) ? "an IPv6 address goes in brackets, e.g. http://[2001:db8::5]:8080/hook" : "write an absolute http:// or https:// URL";
        ctx.error(urlEntry.value, "invalid-url", `invalid url ${quoted(redactUrlText(url))}; ${fix}`);
      }
    }
  } else if (urlEntry) ctx.warn(urlEntry.keyNode, "ignored-key", `url is ignored with action ${action}`);
  const rejectEntry = entries.get("reject_message");
  const rejectMessage = rejectEntry === undefined ? null : parseRejectMessage(ctx, rejectEntry);
  if (rejectEntry && action !== "reject") ctx.warn(rejectEntry.keyNode, "ignored-key", `reject_message is ignored with action ${action}`);
  // loop_ok only acknowledges the forward-loop warning: elsewhere (`rules add --loop-ok` on an
  // archive rule) it was written and silently meant nothing, unlike the other ignored keys.
  const loopEntry = entries.get("loop_ok");
  if (loopEntry && action !== "forward") ctx.warn(loopEntry.keyNode, "ignored-key", `loop_ok is ignored with action ${action} (it acknowledges a forward into domains)`);
  const archiveEntry = entries.get("archive");
  const archiveFlag = archiveEntry === undefined ? false : ctx.boolean(archiveEntry.value, "archive", archiveEntry.keyNode);
  if (archiveFlag === true && (action === "reject" || action === "drop")) {
    ctx.error(archiveEntry?.value, "invalid-value", `archive: true contradicts action ${action} (the message is not kept); use action archive instead`);
  }
  if (ctx.errorCount > errorsBefore) return null;
  return { action, category, forwardTo, url, rejectMessage, archive: action === "archive" || archiveFlag === true };
}

function parseName(ctx: YamlContext, entry: MapEntry | undefined, map: YAMLMap): string | null {
  if (entry === undefined) {
    ctx.error(map, "missing-key", "rule has no 'name'");
    return null;
  }
  const name = ctx.string(entry.value, "name", entry.keyNode);
  if (name === null) return null;
  if (RULE_NAME_PATTERN.test(name) && name.length <= MAX_NAME_CHARS) return name;
  ctx.error(entry.value, "invalid-name", `rule name ${quoted(name)} must be 1 to ${MAX_NAME_CHARS} characters of a-z, 0-9 and -`);
  return null;
}

function parsePriority(ctx: YamlContext, entry: MapEntry | undefined): number | null {
  if (entry === undefined) return 0;
  const node = entry.value;
  if (isScalar(node) && typeof node.value === "number" && Number.isSafeInteger(node.value) && node.value >= 0) return node.value;
  // `priority: "10"` is text to YAML; the bare rule would leave the admin staring at a 10.
  const quoted = isScalar(node) && typeof node.value === "string" && /^\d+$/.test(node.value.trim());
  const fix = quoted ? `: write priority: ${String(node.value).trim()} without quotes` : "";
  ctx.error(node ?? entry.keyNode, "invalid-priority", `priority must be a whole number ≥ 0 (higher is evaluated first)${fix}`);
  return null;
}

function parseMatch(ctx: YamlContext, entry: MapEntry | undefined): MatchMode | null {
  if (entry === undefined) return "all";
  const text = ctx.string(entry.value, "match", entry.keyNode);
  if (text === "all" || text === "any") return text;
  if (text !== null) ctx.error(entry.value, "invalid-value", `match must be all or any, not ${quoted(text)}`);
  return null;
}

function parseConditions(ctx: YamlContext, entry: MapEntry | undefined, map: YAMLMap): ConditionSpec[] | null {
  if (entry === undefined) {
    ctx.error(map, "missing-conditions", "rule has no conditions; add conditions: [...] (a catch-all uses { field: subject, operator: regex, value: '.*' })");
    return null;
  }
  const seq = ctx.asSeq(entry.value, "conditions", entry.keyNode);
  if (seq === null) return null;
  if (seq.items.length === 0) {
    ctx.error(seq, "missing-conditions", "conditions is empty; a rule needs at least one condition");
    return null;
  }
  if (seq.items.length > MAX_CONDITIONS_PER_RULE) {
    ctx.error(seq, "too-many-conditions", `more than ${MAX_CONDITIONS_PER_RULE} conditions in one rule`);
    return null;
  }
  const specs = seq.items.map((item) => validateCondition(ctx, ctx.deref(item), seq));
  return specs.every((spec) => spec !== null) ? (specs as ConditionSpec[]) : null;
}

export function validateRule(ctx: YamlContext, node: Node | null, at: Node, fileIndex: number): RuleDraft | null {
  const map = ctx.asMap(node, "a rule", at);
  if (map === null) return null;
  const errorsBefore = ctx.errorCount;
  const entries = entryMap(ctx.entries(map, RULE_KEYS, "a rule"));
  const name = parseName(ctx, entries.get("name"), map);
  const priority = parsePriority(ctx, entries.get("priority"));
  const match = parseMatch(ctx, entries.get("match"));
  const description = entries.get("description");
  if (description) ctx.string(description.value, "description", description.keyNode);
  const loopEntry = entries.get("loop_ok");
  const loopOk = loopEntry === undefined ? false : ctx.boolean(loopEntry.value, "loop_ok", loopEntry.keyNode);
  const fields = parseActionFields(ctx, entries, map, null);
  const conditions = parseConditions(ctx, entries.get("conditions"), map);
  if (name === null || priority === null || match === null || fields === null || conditions === null || loopOk === null) return null;
  if (ctx.errorCount > errorsBefore) return null;
  const nameNode = entries.get("name")?.value ?? map;
  return { name, nameNode, priority, match, loopOk, conditions, fields, pos: ctx.posOf(map), fileIndex };
}

/** The `default:` decision: action (archive when omitted), category and targets. */
export function validateDefault(ctx: YamlContext, node: Node | null, at: Node): { fields: ActionFields; loopOk: boolean } | null {
  const map = ctx.asMap(node, "default", at);
  if (map === null) return null;
  const entries = entryMap(ctx.entries(map, DEFAULT_KEYS, "default"));
  const loopEntry = entries.get("loop_ok");
  const loopOk = loopEntry === undefined ? false : ctx.boolean(loopEntry.value, "loop_ok", loopEntry.keyNode);
  const fields = parseActionFields(ctx, entries, map, "archive");
  return fields === null || loopOk === null ? null : { fields, loopOk };
}
