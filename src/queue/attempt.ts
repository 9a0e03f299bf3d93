/**
 * One delivery attempt: read the stored bytes, hand them to the transport the delivery's
 * kind names, and report what happened. Knows nothing about scheduling or the database.
 *
 * Trusts: the claimed row (written by the pipeline). Failure: never throws. A missing or damaged
 * spool file is permanent (nothing left to send; the log says so loudly), any other read error is
 * temporary (disk hiccup), and transport outcomes pass through.
 */
import type { RelayClient } from "../act/relay.ts";
import { redactUrl } from "../act/redact-url.ts";
import { postWebhook } from "../act/webhook.ts";
import { VERSION } from "../version.ts";
import { MISSING_FILE_PREFIX } from "../store/messages.ts";
import type { ClaimedDelivery } from "./queue-store.ts";
import type { AttemptOutcome } from "./retry.ts";
import { isMissingFile, type SpoolAccess } from "./spool-access.ts";

export interface AttemptContext {
  spool: SpoolAccess;
  /** null when no relay is configured (forwards are then held before reaching here). */
  relay: RelayClient | null;
  webhookSecret: string | null;
  /** Aborted at the attempt's deadline or when the worker stops. */
  signal: AbortSignal;
  /**
   * Forwards: aborted only when the worker stops, with `deadlineMs` for the deadline, which the
   * relay client applies until the message is sent but not to the wait for the relay's final reply.
   */
  stopSignal: AbortSignal;
  deadlineMs: number;
  /** Webhooks: how long a post may make no progress (`signal` allows for the upload of a large message). */
  idleTimeoutMs?: number;
  nowMs: number;
}

export interface AttemptResult {
  outcome: AttemptOutcome;
  /** What was tried, for logs and the attempts table. */
  target: string;
  /** A forward not sent because a reload removed the relay: not an attempt, it is held again. */
  unsent?: true;
  /** A forward's: whether the relay itself failed (RelayAttempt.relayDown); absent when not known. */
  relayDown?: boolean;
  /**
   * A forward's: the relay (`host:port`) that had it. After a reload to another relay, a busy
   * session finishes on the old one: its failure or success says nothing about the new one's.
   */
  relay?: string;
}

export async function runAttempt(d: ClaimedDelivery, ctx: AttemptContext): Promise<AttemptResult> {
  const target = describeTarget(d, ctx.relay);
  let raw: Uint8Array;
  try {
    raw = await ctx.spool.read(d.messageId);
  } catch (err) {
    const text = err instanceof Error ? err.message : String(err);
    if (isMissingFile(err)) return { target, outcome: { kind: "permanent", error: `${MISSING_FILE_PREFIX}: ${text}` } };
    return { target, outcome: { kind: "temporary", error: `cannot read spool file: ${text}` } };
  }
  const damage = spoolDamage(d, raw);
  if (damage !== null) return { target, outcome: { kind: "permanent", error: `spool file damaged: ${damage}` } };
  if (d.kind === "forward") {
    if (ctx.relay === null) return { target, outcome: { kind: "temporary", error: "no relay configured" } };
    const to = parseAddresses(d.target);
    if (to.length === 0) return { target, outcome: { kind: "permanent", error: `delivery has no forward_to addresses` } };
    const sent = await ctx.relay.send({ mailFrom: d.mailFrom, to, raw, signal: ctx.stopSignal, deadlineMs: ctx.deadlineMs });
    // A reload may have handed the message to the new relay: name the one that had it.
    return {
      target: sent.relay === ctx.relay.label ? target : forwardTarget(sent.relay, to), outcome: sent.outcome, relay: sent.relay,
      ...(sent.unsent ? { unsent: true } : {}), ...(sent.relayDown === undefined ? {} : { relayDown: sent.relayDown }),
    };
  }
  const outcome = await postWebhook({
    url: d.target,
    secret: ctx.webhookSecret,
    signal: ctx.signal,
    ...(ctx.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: ctx.idleTimeoutMs }),
    nowMs: ctx.nowMs,
    userAgent: `mailgw/${VERSION}`,
    message: {
      id: d.messageId,
      receivedAt: d.receivedAt,
      rule: d.rule,
      category: d.category,
      envelope: { mailFrom: d.mailFrom, rcptTo: parseAddresses(d.recipients), clientIp: d.clientIp, helo: d.helo, tls: d.tls === 1 },
      raw,
    },
  });
  return { target, outcome };
}

/**
 * Why the bytes read are not the message accepted, or null. A spool file truncated (a power cut
 * on a file system that lost its data, a careless `> file`) or zeroed was sent as it was: an
 * empty message reached the relay, the delivery counted as done and the file was removed. The
 * row's size and CRC-32 (taken as the bytes arrived) tell; the failed delivery keeps the file.
 */
function spoolDamage(d: ClaimedDelivery, raw: Uint8Array): string | null {
  if (raw.byteLength !== d.size) return `${raw.byteLength} bytes on disk, ${d.size} accepted; the file is kept in the spool`;
  if (d.spoolCrc === null || Bun.hash.crc32(raw) === d.spoolCrc) return null;
  return `its bytes are not the ones accepted (CRC-32 differs); the file is kept in the spool`;
}

export function describeTarget(d: ClaimedDelivery, relay: RelayClient | null): string {
  if (d.kind === "webhook") return redactUrl(d.target);
  return forwardTarget(relay?.label ?? "(no relay)", parseAddresses(d.target));
}

const FORWARD_ARROW = " → ";

/** `relay → a,b,c`: a forward's target in logs and attempt records. */
export function forwardTarget(relayLabel: string, addresses: readonly string[]): string {
  return `${relayLabel}${FORWARD_ARROW}${addresses.join(",")}`;
}

/**
 * A forward's target (`relay → a,b,c`) naming only `recipients`: for the log lines of an attempt
 * the relay took for some recipients and refused or deferred for others. A webhook's target, or
 * no recipients, is returned as it is.
 */
export function narrowTarget(target: string, recipients: readonly string[]): string {
  const arrow = target.indexOf(FORWARD_ARROW);
  if (arrow < 0 || recipients.length === 0) return target;
  return `${target.slice(0, arrow + FORWARD_ARROW.length)}${recipients.join(",")}`;
}

/** A JSON array of strings from the database; anything else yields []. */
export function parseAddresses(json: string): string[] {
  try {
    const v: unknown = JSON.parse(json);
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
  } catch {
    return [];
  }
}
