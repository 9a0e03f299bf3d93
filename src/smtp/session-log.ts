/**
 * Per-session bookkeeping for the one log line per SMTP session (SPEC §2 LOG_*): client,
 * helo, tls, from, recipients, size, decision, id, duration, reply. State lives in a Map
 * keyed by smtp-server's session id and is removed when the session closes, so its size is
 * bounded by the number of open sessions (MAX_CLIENTS).
 * Nothing here writes anything but the log line; counters are the caller's (onSessionEnd).
 */
import type { TLSSocket } from "node:tls";
import type { Logger, LogRecord } from "../log/logger.ts";
import { terminalSafeJson } from "../log/terminal-json.ts";
import { BARE_LF_END_ERROR, BARE_LF_END_REPLY } from "./bare-lf-end.ts";

export interface SessionSummary {
  id: string;
  client: string;
  helo: string;
  tls: boolean;
  /**
   * The TLS protocol the STARTTLS handshake negotiated (`TLSv1.3`) and its cipher suite
   * (`TLS_AES_256_GCM_SHA384`), what Postfix logs as `TLS connection established from …:
   * TLSv1.3 with cipher …`; null without TLS.
   */
  tlsVersion: string | null;
  tlsCipher: string | null;
  /**
   * Envelope sender and accepted recipients of the last message that reached the end of DATA,
   * or, when none did, of the last MAIL FROM, one refused by the rate limit or SMTP_TLS_REQUIRED
   * included ("" = null sender, null = none). A transaction abandoned after a message (MAIL,
   * refused RCPT, QUIT) never relabels it.
   */
  from: string | null;
  recipients: string[];
  /** Recipients refused at RCPT in the whole session, with the reply code (the first few). */
  refused: string[];
  /** How many recipients were refused in all (more than `refused` lists when over the cap). */
  refusedCount: number;
  /** Bytes of the last message received (before our Received header). */
  size: number | null;
  /** Last decision: the action taken, "reject", or null when no message was stored. */
  decision: string | null;
  category: string | null;
  rule: string | null;
  /** The last message's SPF/DKIM/DMARC results, when a rule needed them (`spf=… dkim=… dmarc=…`). */
  auth: string | null;
  /** Ids of every message accepted in the session. */
  ids: string[];
  /**
   * A message's commit counted the session already (Envelope.firstInSession): its end does not
   * count it again.
   */
  countedWithMessage: boolean;
  /**
   * Every message that reached its final reply, in order (the first MESSAGES_LOGGED_MAX): the
   * line lists them when there was more than one, or when the session's last reply is not the
   * message's, so each id goes with its own envelope, decision and reply (the top-level fields
   * describe the last message).
   */
  messages: MessageSummary[];
  messageCount: number;
  /** Messages already written in "smtp session messages" lines (flushLoggedMessages). */
  messagesLogged: number;
  /** Id of the last message that reached its final reply (none when refused before it got one). */
  lastId: string | null;
  durationMs: number;
  /** Last notable reply (an error, a refusal, or `250 2.0.0 Queued as ...`). */
  reply: string | null;
  /**
   * What ended the connection abnormally, when the library reported it: a failed STARTTLS
   * handshake (like Postfix's `SSL_accept error`), a reset mid-transaction. null: none.
   */
  error: string | null;
}

export interface MessageSummary {
  /** Absent when the message was refused before it got one (too big, a loop, a storage failure). */
  id?: string;
  from: string;
  /** The first MESSAGE_RECIPIENTS_LOGGED of its recipients; `recipients_count` says how many when more. */
  recipients: string[];
  recipients_count?: number;
  size: number | null;
  /**
   * Whether this message came under TLS: a session's `tls` is true once STARTTLS succeeded, also
   * for a message sent in plain text before it, which a search for `"tls":false` then missed.
   */
  tls: boolean;
  decision: string | null;
  category?: string;
  rule?: string;
  auth?: string;
  reply: string;
}

export interface SessionState extends Omit<SessionSummary, "durationMs"> {
  /** Id of the message being finished (accepted, or recorded as rejected); null before. */
  messageId: string | null;
  /** When the session started, by the SMTP server's clock (monotonic): only durations are taken from it. */
  startedAt: number;
  /** Envelope of the last message that reached the end of DATA (see `from` above). */
  lastMessage: { from: string; recipients: string[] } | null;
  /** A complete message is being classified/stored: deadlines must wait. */
  storing: boolean;
  /** The DATA handler has not settled yet (the message is arriving or being stored). */
  receiving: boolean;
  /** Set when the session closed while `receiving`: writes its line once the handler settles. */
  afterReceiving: (() => void) | null;
  /** The client's QUIT was answered (221): the session ended as it should, however the socket then goes. */
  quitAnswered: boolean;
  /** Logged bytes of `messages` (loggedBytes), for MESSAGES_LOGGED_BYTES. */
  messagesBytes: number;
}

export function newSessionState(id: string, client: string, now: number): SessionState {
  return {
    id,
    client,
    helo: "",
    tls: false,
    tlsVersion: null,
    tlsCipher: null,
    from: null,
    recipients: [],
    refused: [],
    refusedCount: 0,
    size: null,
    decision: null,
    category: null,
    rule: null,
    auth: null,
    ids: [],
    countedWithMessage: false,
    messages: [],
    messageCount: 0,
    messagesLogged: 0,
    lastId: null,
    messageId: null,
    reply: null,
    error: null,
    startedAt: now,
    lastMessage: null,
    storing: false,
    receiving: false,
    afterReceiving: null,
    quitAnswered: false,
    messagesBytes: 0,
  };
}

/** A MAIL FROM was given (accepted or refused): its sender labels the session until a message ends. */
export function noteSender(state: SessionState, from: string): void {
  state.from = from;
  state.recipients = [];
}

/** Refused recipients named in the log line; a client probing thousands still gets one line. */
const REFUSED_LOGGED_MAX = 10;
/** An address is logged up to this many characters. */
const REFUSED_ADDRESS_MAX = 256;

/**
 * Bytes that the addresses listed in one line may take as the log writes them (loggedBytes).
 * Their length is the sender's (up to 254 characters) and so is what they are written as (a bidi
 * override is `\u202e`, six bytes; a CJK character three bytes of UTF-8): one message to 100 such
 * recipients made a 144 KB line, and a session's 100 listed messages up to 600 KB. journald
 * splits a line past 48 KB (LineMax, in bytes) into several entries, and a log shipper then reads
 * broken JSON. Ordinary addresses all fit (100 recipients of 30 characters take 3,300); past the
 * budget a count says how many there were. With the other fields (a HELO name and a sender of at
 * most ~1,800 bytes each, the listed messages up to MESSAGES_LOGGED_BYTES plus one message's
 * ~6,500) a line stays under 44 KB.
 */
const RECIPIENTS_LOGGED_BYTES = 8_000;
const REFUSED_LOGGED_BYTES = 4_000;
/**
 * The listed messages go out in a line of their own (flushLoggedMessages) past this: 100
 * ordinary ones (~160-200 bytes each, `tls` included) still fit.
 */
const MESSAGES_LOGGED_BYTES = 20_000;

/**
 * Bytes `value` takes in a log line (as JSON, terminal-safe: what both formats write), in UTF-8:
 * counted in UTF-16 units, 17 messages with CJK addresses made a 53 KB line.
 */
function loggedBytes(value: unknown): number {
  return Buffer.byteLength(terminalSafeJson(value));
}

/** The first of `list` whose logged bytes fit in `budget`. */
function fitting(list: readonly string[], budget: number): string[] {
  let used = 0;
  let n = 0;
  while (n < list.length && (used += loggedBytes(list[n]) + 1) <= budget) n++;
  return list.slice(0, n);
}

/**
 * Notes a recipient refused at RCPT, like Postfix's `NOQUEUE: reject: RCPT … to=<…>`, so relay
 * probing shows in the log even when the session stores nothing.
 */
export function noteRefusedRecipient(state: SessionState, address: string, code: number): void {
  state.refusedCount++;
  const entry = `${address.slice(0, REFUSED_ADDRESS_MAX)} (${code})`;
  // The first ones only: once one is left out, so are the later ones (refused_count counts them).
  const allListed = state.refused.length === state.refusedCount - 1;
  if (allListed && state.refused.length < REFUSED_LOGGED_MAX && loggedBytes([...state.refused, entry]) <= REFUSED_LOGGED_BYTES) state.refused.push(entry);
}

/** Messages listed in one session line; a client sending thousands still gets one line. */
const MESSAGES_LOGGED_MAX = 100;
/**
 * Recipients named per listed message (the last message's are all in the line's `recipients`).
 * All of them made a session of 100 messages to 100 recipients a 0.3–2 MB line: journald splits
 * lines over 48 KB (LineMax) and Docker over 16 KB, and a log shipper then gets broken JSON.
 */
const MESSAGE_RECIPIENTS_LOGGED = 3;

/**
 * The session's error when its DATA ended without a reply (the client left, or mailgw closed
 * it), noted whichever of the close and the DATA handler's end comes first: it was missing from
 * ~40% of such lines, those whose handler settled before the close was seen.
 */
export function noteDataCutShort(state: SessionState): void {
  // A 421 written during DATA (the idle timeout, the DATA time limit, a stop) is mailgw
  // ending it, as Postfix's "timeout after DATA" is not its "lost connection after DATA".
  const ours = state.reply?.startsWith("421 ") === true;
  const cause = state.reply?.includes(BARE_LF_END_REPLY) ? BARE_LF_END_ERROR : "mailgw closed the connection during DATA (see reply)";
  state.error ??= ours ? cause : "connection closed before the reply to DATA";
}

/** A message got its final reply (250 with its id, or a refusal after DATA). */
export function noteMessageEnd(state: SessionState, code: number, text: string): void {
  state.messageCount++;
  state.lastId = state.messageId;
  if (state.messages.length >= MESSAGES_LOGGED_MAX || state.lastMessage === null) return;
  const listed: MessageSummary = {
    ...(state.messageId !== null ? { id: state.messageId } : {}),
    from: state.lastMessage.from,
    recipients: state.lastMessage.recipients.slice(0, MESSAGE_RECIPIENTS_LOGGED),
    ...(state.lastMessage.recipients.length > MESSAGE_RECIPIENTS_LOGGED ? { recipients_count: state.lastMessage.recipients.length } : {}),
    size: state.size,
    tls: state.tls,
    decision: state.decision,
    ...(state.category !== null ? { category: state.category } : {}),
    ...(state.rule !== null ? { rule: state.rule } : {}),
    ...(state.auth !== null ? { auth: state.auth } : {}),
    reply: `${code} ${text}`,
  };
  state.messages.push(listed);
  state.messagesBytes += loggedBytes(listed) + 1;
}

/**
 * A session's MESSAGES_LOGGED_MAX-th listed message, or the one that takes the list past
 * MESSAGES_LOGGED_BYTES: the list goes out in a line of its own ("smtp session messages", the
 * session's id, the number of its first message) and starts again, so every message id is in
 * some line, as Postfix logs every queue id. Past the cap a session of thousands of messages
 * (one client's whole batch) named none after the 100th.
 */
export function flushLoggedMessages(logger: Logger, state: SessionState): void {
  if (state.messages.length < MESSAGES_LOGGED_MAX && state.messagesBytes < MESSAGES_LOGGED_BYTES) return;
  logger.info("smtp session messages", {
    session: state.id,
    client: state.client,
    first: state.messagesLogged + 1,
    messages: state.messages.map((m): LogRecord => ({ ...m })),
  });
  state.messagesLogged += state.messages.length;
  state.messages = [];
  state.messagesBytes = 0;
}

/** Replies worth keeping as the session's outcome: failures and the final queued reply. */
export function isNotableReply(code: number, text: string): boolean {
  return code >= 400 || (code === 250 && text.startsWith("2.0.0 Queued"));
}

export function summarize(state: SessionState, now: number): SessionSummary {
  const { startedAt, storing: _storing, receiving: _receiving, afterReceiving: _afterReceiving, quitAnswered: _quitAnswered, lastMessage, messageId: _messageId, messagesBytes: _messagesBytes, ...rest } = state;
  const envelope = lastMessage ? { from: lastMessage.from, recipients: [...lastMessage.recipients] } : {};
  return { ...rest, ...envelope, durationMs: Math.max(0, Math.round(now - startedAt)) };
}

/** No transaction was even started: nothing to trace (a probe, a scanner, a health check). */
export function startedNoMail(s: SessionSummary): boolean {
  return s.from === null && s.ids.length === 0 && s.refusedCount === 0 && s.decision === null;
}

export function logSession(logger: Logger, s: SessionSummary, level: "info" | "debug" = "info"): void {
  // The messages are listed, each with its own reply, when there were several, or when a later
  // reply (a MAIL refused by the rate limit) is the session's: `id=X reply=451` would say X was refused.
  const listed = s.messageCount > 1 || (s.messageCount === 1 && s.messages[0] !== undefined && s.messages[0].reply !== s.reply);
  const recipients = fitting(s.recipients, RECIPIENTS_LOGGED_BYTES);
  logger[level]("smtp session", {
    session: s.id,
    client: s.client,
    helo: s.helo || undefined,
    tls: s.tls,
    tls_version: s.tlsVersion ?? undefined,
    tls_cipher: s.tlsCipher ?? undefined,
    from: s.from ?? undefined,
    recipients: recipients.length ? recipients : undefined,
    recipients_count: recipients.length < s.recipients.length ? s.recipients.length : undefined,
    refused: s.refused.length ? s.refused : undefined,
    refused_count: s.refusedCount > s.refused.length ? s.refusedCount : undefined,
    size: s.size ?? undefined,
    decision: s.decision ?? undefined,
    category: s.category ?? undefined,
    rule: s.rule ?? undefined,
    auth: s.auth ?? undefined,
    // One message: its id, also when a rule rejected it (it is recorded under that id, and the
    // "message rejected" line names it). Several: the last one's (the fields above are the last
    // one's too), and each message with its own id, envelope and decision below.
    id: s.messageCount > 1 ? (s.lastId ?? undefined) : s.ids.length ? s.ids.join(",") : s.messages[0]?.id,
    messages: listed && s.messages.length > 0 ? s.messages.map((m): LogRecord => ({ ...m })) : undefined,
    // Earlier ones are in "smtp session messages" lines of this session.
    messages_first: s.messagesLogged > 0 && s.messages.length > 0 ? s.messagesLogged + 1 : undefined,
    messages_count: s.messageCount > s.messages.length ? s.messageCount : undefined,
    duration_ms: s.durationMs,
    reply: s.reply ?? undefined,
    error: s.error ?? undefined,
  });
}

/**
 * Notes the outcome of a completed STARTTLS handshake. The protocol comes from getProtocol():
 * getCipher().version is the oldest protocol the cipher suite exists in, not the one negotiated
 * (ECDHE-RSA-AES128-SHA over TLS 1.2 reports `TLSv1.0`).
 */
export function noteTlsEstablished(state: SessionState, socket: Pick<TLSSocket, "getProtocol" | "getCipher">): void {
  state.tls = true;
  state.tlsVersion = socket.getProtocol() || null;
  state.tlsCipher = socket.getCipher()?.name || null;
}

/** Longest connection error text kept for the log line. */
const ERROR_TEXT_MAX = 200;

/**
 * The first connection error of a session, as smtp-server reports it: a failed TLS handshake
 * carries the TLS library's own text in `meta.message` (the error says only "Failed to establish
 * TLS session") and `meta.stage` "connect".
 * Not after the 221 to QUIT: a client that then resets the connection instead of closing it
 * (smtp-source, anything with SO_LINGER 0) had "ECONNRESET" in the line of every session that
 * ended as it should.
 */
export function noteConnectionError(state: SessionState, err: unknown): void {
  if (state.error !== null || state.quitAnswered || !(err instanceof Error)) return;
  const meta = (err as { meta?: { stage?: unknown; message?: unknown } }).meta;
  const code = (err as { code?: unknown }).code;
  const detail = typeof meta?.message === "string" ? meta.message : err.message;
  // smtp-server labels every error of the TLS socket stage "connect", also one after the
  // handshake (a refused renegotiation: BoringSSL answers no_renegotiation and the client drops).
  const tlsText = state.tlsVersion === null ? "TLS handshake failed" : "TLS error after the handshake";
  // Bun's socket errors already start with their code ("EPIPE: broken pipe, read"): not twice.
  const prefix = typeof code === "string" && !detail.startsWith(`${code}:`) ? `${code}: ` : "";
  const text = meta?.stage === "connect" ? `${tlsText}: ${detail}` : `${prefix}${detail}`;
  state.error = text.replace(/[\x00-\x1f\x7f]+/g, " ").trim().slice(0, ERROR_TEXT_MAX);
}
