/**
 * Relay client for `forward` deliveries: a pool of nodemailer SMTP connections (relay-pool.ts),
 * reused across messages, to the configured smarthost (SPEC §2 RELAY_*, §5).
 *
 * Security: RELAY_SMTP_SECURE=starttls sets requireTLS, so a relay that does not offer
 * STARTTLS, answers 454, or fails certificate checks (RELAY_SMTP_TLS_VERIFY) is dropped
 * before AUTH: credentials never travel in clear unless `none` was chosen. The password is
 * handed to nodemailer only; it is never logged or put in an error text.
 * Bytes: the stored message is sent as `raw` after normalizeLineEndings (no bare CR/LF,
 * SMTP smuggling), with lines over 998 octets broken as Postfix does (long-lines.ts);
 * nodemailer only dot-stuffs. Envelope = original MAIL FROM → forward_to, with
 * BODY=8BITMIME when the message has 8-bit bytes (else a relay such as Postfix records it as
 * 7-bit and would pass the bytes unconverted to a 7-bit-only next hop), converted to 7-bit for a
 * relay that does not offer 8BITMIME (mime-downgrade.ts), SIZE= when offered,
 * UTF-8 domains as A-labels, SMTPUTF8 when a local part needs it or the client declared it
 * (relay-envelope.ts).
 * Latency: nodemailer ≥ 10 sets TCP_NODELAY on its sockets (smtp-connection `_onConnect`),
 * which avoids the 40 ms Nagle/delayed-ACK stall per message Haraka suffers from.
 * Failure: never throws; every send resolves to an AttemptOutcome (see classifyRelayError,
 * splitAllRefused when every recipient was refused, some for good, splitDataRefused when the
 * data was refused after some recipients were, and,
 * when the relay took the message for only some recipients, acceptedOutcome).
 */
import { isAscii } from "node:buffer";
import { isIP } from "node:net";
import type { RelayConfig } from "../config/config.ts";
import { hostPort } from "../host-port.ts";
import type { AttemptOutcome } from "../queue/retry.ts";
import { normalizeLineEndings } from "./normalize-crlf.ts";
import { relayErrorHint } from "./relay-advice.ts";
import { declaredSmtpUtf8, relayEnvelope } from "./relay-envelope.ts";
import { createRelayPool, isPoolClosedError } from "./relay-pool.ts";

/** Parallel connections to the relay; relays throttle per client, a handful is plenty. */
export const RELAY_MAX_CONNECTIONS = 8;
/** Messages per connection before it is recycled (bounds a relay-side session's state). */
export const RELAY_MAX_MESSAGES_PER_CONNECTION = 1000;
/** TCP connect deadline: a blackholed relay address must not hold a slot for minutes. */
export const RELAY_CONNECT_TIMEOUT_MS = 15_000;
/** Greeting / STARTTLS deadline: stops a relay that accepts and then says nothing. */
export const RELAY_GREETING_TIMEOUT_MS = 15_000;
/** Silence on an established connection before it is abandoned. */
export const RELAY_SOCKET_TIMEOUT_MS = 60_000;
/**
 * Silence allowed after the end of data, awaiting the relay's reply: RFC 5321 4.5.3.2.6's 10
 * minutes (Postfix's smtp_data_done_timeout). The relay has the message then; a shorter wait
 * would send a second copy of a message that a slow relay (content scanning) was accepting.
 */
export const RELAY_FINAL_REPLY_TIMEOUT_MS = 600_000;
/** Idle pooled connections are closed after this, before relays time them out themselves. */
export const RELAY_IDLE_TIMEOUT_MS = 60_000;

export interface RelaySendInput {
  mailFrom: string;
  to: string[];
  raw: Uint8Array;
  /** Aborting fails the attempt and closes the connection it was using. */
  signal: AbortSignal;
  /**
   * The attempt fails as timed out if the message is not all sent by then (waiting for a
   * connection included); the relay's reply to the end of data is awaited beyond it.
   */
  deadlineMs?: number;
}

/** What became of one message, and the relay (`host:port`) that had it. */
export interface RelayAttempt {
  outcome: AttemptOutcome;
  relay: string;
  /** The client was closed with no successor (relay removed by a reload) before it was sent. */
  unsent?: true;
  /**
   * Whether the relay itself failed (no session could be set up, it answered 421, or the session
   * died without a reply): see RelayPoolResult. false: a session worked (the message was taken or
   * refused on it); absent: not known (no session was tried for the message, or its deadline cut
   * it off before a reply).
   */
  relayDown?: boolean;
}

export interface RelayClient {
  send(input: RelaySendInput): Promise<RelayAttempt>;
  /**
   * Ends pooled connections (QUIT; a busy one after its message). Messages still waiting for a
   * connection go to `next` (the relay a SIGHUP loaded): a reload defers nothing. Without
   * `next` they fail as temporary. Resolves when the idle connections are done.
   */
  close(next?: RelayClient): Promise<void>;
  readonly maxConnections: number;
  /** `host:port` for logs and attempt records (never the credentials). */
  readonly label: string;
}

export interface RelayClientOptions {
  /** Name sent in EHLO (SMTP_HOSTNAME). */
  ehloName: string;
  maxConnections?: number;
  /** See RelayPoolOptions.onSessionReady. */
  onSessionReady?: (maxMessageBytes: number | null) => void;
}

export function createRelayClient(relay: RelayConfig, opts: RelayClientOptions): RelayClient {
  const maxConnections = opts.maxConnections ?? RELAY_MAX_CONNECTIONS;
  const pool = createRelayPool({
    connection: {
      host: relay.host,
      port: relay.port,
      name: opts.ehloName,
      secure: relay.secure === "tls",
      requireTLS: relay.secure === "starttls",
      ignoreTLS: relay.secure === "none",
      // SNI only for names (TLS forbids IP addresses there); verification still checks IP SANs.
      tls: { rejectUnauthorized: relay.tlsVerify, ...(isIP(relay.host) ? {} : { servername: relay.host }) },
      connectionTimeout: RELAY_CONNECT_TIMEOUT_MS,
      greetingTimeout: RELAY_GREETING_TIMEOUT_MS,
      socketTimeout: RELAY_SOCKET_TIMEOUT_MS,
      logger: false,
    },
    auth: relay.user !== null ? { user: relay.user, pass: relay.pass ?? "" } : null,
    maxConnections,
    maxMessagesPerConnection: RELAY_MAX_MESSAGES_PER_CONNECTION,
    idleTimeoutMs: RELAY_IDLE_TIMEOUT_MS,
    finalReplyTimeoutMs: RELAY_FINAL_REPLY_TIMEOUT_MS,
    // One immediate retry on a fresh connection when a pooled one was closed under us
    // (relay idle timeout); anything beyond that is the queue's job, with backoff.
    maxRequeues: 1,
    ...(opts.onSessionReady ? { onSessionReady: opts.onSessionReady } : {}),
  });
  const label = hostPort(relay.host, relay.port);
  let successor: RelayClient | null = null;
  return {
    maxConnections,
    label,
    async send(input) {
      const normal = normalizeLineEndings(input.raw);
      const raw = Buffer.from(normal.buffer, normal.byteOffset, normal.byteLength);
      const envelope = relayEnvelope(input.mailFrom, input.to);
      const job = { ...envelope, raw, eightBit: !isAscii(raw), smtpUtf8Declared: declaredSmtpUtf8(raw), signal: input.signal, deadlineMs: input.deadlineMs };
      const result = await pool.send(job);
      if (result.ok) return { relay: label, outcome: acceptedOutcome(result.info.response, result.info.rejectedErrors), relayDown: false };
      // Closed by a reload before any byte of it was sent: the new relay takes it, no retry delay.
      if (isPoolClosedError(result.error)) {
        if (successor !== null) return successor.send(input);
        return { relay: label, outcome: { kind: "temporary", error: "not sent: the relay was removed by a reload" }, unsent: true };
      }
      const outcome = splitAllRefused(result.error) ?? splitDataRefused(result.error, envelope.to) ?? classifyRelayError(result.error);
      // TLS mode vs port, certificate checks: the raw error names neither the setting nor the fix.
      const hint = relayErrorHint(relay, outcome.error);
      const down = result.relayDown === undefined ? {} : { relayDown: result.relayDown };
      return { relay: label, outcome: hint === null ? outcome : { ...outcome, error: `${hint}: ${outcome.error}` }, ...down };
    },
    close(next) {
      successor = next ?? null;
      return pool.close();
    },
  };
}

interface RelayErrorFields {
  message?: unknown;
  code?: unknown;
  responseCode?: unknown;
  command?: unknown;
  name?: unknown;
}

/** Commands whose 5xx condemns the message itself; a 5xx anywhere else is about the session. */
const MESSAGE_COMMANDS = new Set(["MAIL FROM", "RCPT TO", "DATA", "EOM"]);

/**
 * Maps a nodemailer failure to temporary / permanent (maddy-style: unknown → temporary).
 * - 4xx, connection errors, timeouts, aborts → temporary.
 * - EAUTH / ETLS (wrong credentials, no STARTTLS, 454, bad certificate) and 530 (a login or
 *   STARTTLS the relay requires) → temporary: the message is fine, the configuration or the
 *   relay is not (Postfix soft-bounces these too).
 * - 5xx to MAIL/RCPT/DATA/end of data, a message over the relay's SIZE → permanent.
 */
export function classifyRelayError(err: unknown): Extract<AttemptOutcome, { kind: "temporary" | "permanent" }> {
  const e: RelayErrorFields = typeof err === "object" && err !== null ? (err as RelayErrorFields) : {};
  const message = oneLine(typeof e.message === "string" ? e.message : String(err));
  const code = typeof e.code === "string" ? e.code : "";
  const responseCode = typeof e.responseCode === "number" ? e.responseCode : 0;
  const command = typeof e.command === "string" ? e.command : "";
  const error = code ? `${code}: ${message}` : message;
  if (e.name === "AbortError" || code === "ABORT_ERR") return { kind: "temporary", error: `timed out: ${message}` };
  if (code === "EAUTH" || code === "ETLS") return { kind: "temporary", error };
  // 530 (5.7.0/5.7.1 authentication or STARTTLS required, RFC 4954 §6) is about this gateway's
  // session, not the message: a missing login is fixed in the settings, like a wrong one (EAUTH).
  if (responseCode === 530) return { kind: "temporary", error };
  // SMTPConnection's own check of SIZE= against the relay's announced limit, before MAIL FROM:
  // the relay would answer 552 5.3.4, and retrying cannot make the message smaller.
  if (code === "EMESSAGE" && /size larger than allowed/i.test(message)) {
    return { kind: "permanent", error: `552 5.3.4 the message is larger than the relay's SIZE limit: ${error}` };
  }
  if (responseCode >= 500 && responseCode < 600 && (code === "EENVELOPE" || code === "EMESSAGE" || MESSAGE_COMMANDS.has(command))) {
    return { kind: "permanent", error };
  }
  return { kind: "temporary", error };
}

interface RejectedRecipient {
  responseCode?: number | false;
  recipient?: string;
  response?: string;
}

/**
 * Some recipients accepted (nodemailer reports "all refused" as an error, see classifyRelayError):
 * the delivery is done for them. A 5xx refusal is reported as `refused` (the queue records a
 * failed delivery for those recipients, retryable with `queue retry`); a 4xx one, or a reply
 * without a code (unknown → temporary), as `deferred` (the queue keeps a delivery for just those
 * recipients, retried with backoff; at once for a 452 "too many recipients", the relay's cap on
 * recipients per message). Retrying the whole delivery instead would send the accepted
 * recipients a new copy on every retry. Only if a deferred recipient cannot be named (no address
 * in nodemailer's error) is the whole delivery retried: a duplicate rather than a loss.
 */
export function acceptedOutcome(response: string, rejected: readonly unknown[] | undefined): AttemptOutcome {
  const reply = oneLine(response);
  const list = (rejected ?? []) as RejectedRecipient[];
  if (list.length === 0) return { kind: "delivered", reply };
  const permanent = list.filter(isPermanentRefusal);
  const temporary = list.filter((r) => !isPermanentRefusal(r));
  if (temporary.some((r) => recipientOf(r) === null)) return { kind: "temporary", error: `some recipients deferred (${describeRefusals(temporary)})` };
  const outcome: Extract<AttemptOutcome, { kind: "delivered" }> = { kind: "delivered", reply };
  if (permanent.length > 0) {
    const recipients = permanent.map(recipientOf).filter((r): r is string => r !== null);
    if (recipients.length > 0) outcome.refused = { recipients, error: `recipients refused by the relay: ${describeRefusals(permanent)}` };
    outcome.reply += ` (refused: ${describeRefusals(permanent)})`;
  }
  if (temporary.length > 0) {
    const recipients = temporary.map(recipientOf).filter((r): r is string => r !== null);
    outcome.deferred = { recipients, error: `recipients deferred by the relay: ${describeRefusals(temporary)}` };
    // Some recipients took it, so the next transaction makes progress: no retry loop.
    if (temporary.every(isTooManyRecipients)) outcome.deferred.retryNow = true;
    outcome.reply += ` (deferred: ${describeRefusals(temporary)})`;
  }
  return outcome;
}

/**
 * Every recipient refused, some for good (5xx), the others for now (4xx): nodemailer reports it
 * as one error carrying the 4xx reply, so the whole delivery was retried, the 5xx recipients
 * with it until QUEUE_MAX_AGE_HOURS, their reply shown nowhere. As Postfix does, they fail at
 * once (`refused`: a failed delivery of their own) and only the others are retried. null when
 * the refusals are all of one kind, or a 5xx one names no recipient (classifyRelayError then).
 */
export function splitAllRefused(err: unknown): Extract<AttemptOutcome, { kind: "temporary" }> | null {
  const e = typeof err === "object" && err !== null ? (err as RelayErrorFields & { rejectedErrors?: unknown }) : {};
  if (e.code !== "EENVELOPE" || e.command !== "RCPT TO" || !Array.isArray(e.rejectedErrors)) return null;
  const list = e.rejectedErrors as RejectedRecipient[];
  const permanent = list.filter(isPermanentRefusal);
  if (permanent.length === 0 || permanent.length === list.length) return null;
  const recipients = permanent.map(recipientOf);
  if (recipients.some((r) => r === null)) return null;
  const temporary = list.filter((r) => !isPermanentRefusal(r));
  return {
    kind: "temporary",
    error: `recipients deferred by the relay: ${describeRefusals(temporary)}`,
    refused: { recipients: recipients as string[], error: `recipients refused by the relay: ${describeRefusals(permanent)}` },
  };
}

/**
 * The data refused (the reply to the end of data) after the relay refused some recipients at RCPT,
 * some for good and some for now: the data's reply applies only to the recipients RCPT accepted.
 * As Postfix does, each recipient gets the outcome of its own reply: with a 5xx to the data, the
 * accepted recipients and those refused with a 5xx fail, and those refused with a 4xx are retried
 * (before, all failed, a 4xx recipient given up for another one's reply); with a 4xx to the data,
 * the 5xx recipients fail at once and the others are retried. null when the RCPT refusals leave
 * no such split, or a refused recipient is not named (classifyRelayError then).
 */
export function splitDataRefused(err: unknown, to: readonly string[]): Extract<AttemptOutcome, { kind: "temporary" }> | null {
  const e = typeof err === "object" && err !== null ? (err as RelayErrorFields & { rejectedErrors?: unknown; response?: unknown }) : {};
  if (e.code !== "EMESSAGE" || !Array.isArray(e.rejectedErrors) || typeof e.responseCode !== "number") return null;
  const list = e.rejectedErrors as RejectedRecipient[];
  if (list.some((r) => recipientOf(r) === null)) return null;
  const refusedAt = new Set(list.map((r) => r.recipient));
  const accepted = to.filter((a) => !refusedAt.has(a));
  const dataReply = oneLine(typeof e.response === "string" ? e.response : String(e.message ?? ""));
  const permanent = list.filter(isPermanentRefusal);
  const temporary = list.filter((r) => !isPermanentRefusal(r));
  const dataRefusedForGood = e.responseCode >= 500 && e.responseCode < 600;
  const failing = dataRefusedForGood ? [...accepted.map((recipient) => ({ recipient, response: dataReply })), ...permanent] : permanent;
  const retried = dataRefusedForGood ? temporary : [...accepted.map((recipient) => ({ recipient, response: dataReply })), ...temporary];
  if (failing.length === 0 || retried.length === 0) return null;
  return {
    kind: "temporary",
    error: `recipients deferred by the relay: ${describeRefusals(retried)}`,
    refused: { recipients: failing.map((r) => r.recipient as string), error: `recipients refused by the relay: ${describeRefusals(failing)}` },
  };
}

function isPermanentRefusal(r: RejectedRecipient): boolean {
  return typeof r.responseCode === "number" && r.responseCode >= 500 && r.responseCode < 600;
}

/** The relay's cap on recipients per message (SES 50, Gmail 100), not a problem with the address. */
function isTooManyRecipients(r: RejectedRecipient): boolean {
  return r.responseCode === 452 && /\b4\.5\.3\b|too many recipients/i.test(r.response ?? "");
}

function recipientOf(r: RejectedRecipient): string | null {
  return typeof r.recipient === "string" && r.recipient !== "" ? r.recipient : null;
}

function describeRefusals(list: readonly RejectedRecipient[]): string {
  return list.map((r) => `${r.recipient ?? "?"}: ${oneLine(r.response ?? "")}`).join("; ");
}

/** Relay replies and errors can span lines; keep logs and the attempts table one-line. */
function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, " ").trim().slice(0, 1000);
}
