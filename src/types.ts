/**
 * Boundary types shared by the pipeline stages:
 *   SMTP session → spool → parse → classify → act → deliver.
 * Each stage owns its internal types; only what crosses a stage boundary lives here.
 */

/** Result of an SPF/DKIM/DMARC evaluation, as the rules see it. */
export type AuthResult = "pass" | "fail" | "softfail" | "neutral" | "none" | "temperror" | "permerror";

/** What the SMTP session knows about a message before its bytes are parsed. */
export interface Envelope {
  /** Envelope sender (MAIL FROM), "" for the null sender `<>`. */
  mailFrom: string;
  /** Envelope recipients (RCPT TO), lower-cased domain part, in order. */
  rcptTo: string[];
  /** The real client address (after PROXY protocol), IPv4-mapped IPv6 unwrapped. */
  clientIp: string;
  /** HELO/EHLO argument as given. */
  helo: string;
  /** Whether the session was under TLS when DATA began. */
  tls: boolean;
  /**
   * The session has not been counted yet (`session` / `session_tls` counters): the first
   * message it hands over counts it, in the same commit as the message's own counters, so a
   * crash never leaves more messages counted than sessions. Absent: counted elsewhere (tests, dry run).
   */
  firstInSession?: boolean;
  /**
   * The client's Received: header fields, as serve's loop check counted them (up to one more
   * than its limit): a forward refuses a message its relay would refuse as a loop
   * (act/relay-hops.ts). Absent: not counted (tests, the dry run before its own count).
   */
  receivedHeaders?: number;
}

/**
 * Everything a rule condition can look at. Built by `parse/` from the raw bytes and the
 * envelope; a message that cannot be parsed still yields facts (missing fields empty).
 */
export interface MessageFacts {
  subject: string;
  /** Header From address (lower-case), "" if none. */
  from: string;
  /** Header From display name, "" if none. */
  fromName: string;
  /**
   * Every From address (lower-case) and display name, in order: RFC 5322 allows a list, mail
   * clients show all of it, and a `from` rule must not miss `From: x@evil.example, ceo@…`.
   * `from` and `fromName` are the first of each.
   */
  fromAll: string[];
  fromNames: string[];
  /** Header To addresses. */
  to: string[];
  /** Header Cc addresses. */
  cc: string[];
  /** All header fields: lower-case name → decoded values in message order. */
  headers: Map<string, string[]>;
  /** Text body, or HTML converted to text when there is no text part. */
  body: string;
  /** Attachment file names (nested messages included). */
  attachments: string[];
  /** Attachment MIME types, lower-case. */
  attachmentTypes: string[];
  /** Raw message size in bytes. */
  size: number;
  mailFrom: string;
  rcpt: string[];
  clientIp: string;
  helo: string;
  tls: boolean;
  spf: AuthResult;
  dkim: AuthResult;
  dmarc: AuthResult;
  /** Set when parsing failed or hit a limit; the facts above are then partial. */
  parseError?: string;
}

export type Action = "reject" | "archive" | "forward" | "webhook" | "drop";

/** The classifier's verdict for one message. */
export interface Decision {
  /** Name of the rule that matched, or null when the default applied. */
  rule: string | null;
  category: string;
  action: Action;
  /** Envelope recipients for `forward`. */
  forwardTo: string[];
  /** Target for `webhook`. */
  url: string | null;
  /** Text after `550 5.7.1` for `reject`. */
  rejectMessage: string | null;
  /** Also archive (always true for action `archive`). */
  archive: boolean;
}

/** Delivery queue states (SPEC §5). `held` = forward waiting for a relay to be configured. */
export type DeliveryState = "queued" | "deferred" | "held" | "delivering" | "delivered" | "failed";

export type DeliveryKind = "forward" | "webhook";

/** Message record status: `spooled` = accepted, post-250 actions not yet finished. */
export type MessageStatus = "spooled" | "done";

/**
 * The contract between `smtp/` and the rest of the pipeline (see src/pipeline.ts).
 * `smtp/` hands over the complete message (Received header already prepended) and the
 * envelope; it knows nothing of storage or delivery.
 */
export interface ReceiveOutcome {
  /** Generated message id (never taken from the message). */
  id: string;
  decision: Decision;
  /** `spf=… dkim=… dmarc=…` when a rule needed the checks (for the session's log line). */
  auth?: string;
}

export interface MessageSink {
  /**
   * Classifies and stores a message. Resolves only when the message is durable (spool file
   * fsynced and its record committed) — the caller may then answer `250`. Throws SmtpError:
   * 550 5.7.1 for a reject decision, 451 4.3.0 when storing failed.
   */
  receive(raw: Uint8Array, envelope: Envelope): Promise<ReceiveOutcome>;
}
