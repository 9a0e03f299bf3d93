/**
 * One SMTP session of the relay pool (relay-pool.ts): its state, its setup (connect, greeting,
 * EHLO, STARTTLS, AUTH) and what its relay announced. Separate from the pool's scheduling: the
 * pool hears only that a session is ready, failed its setup, or was lost while idle.
 *
 * Trusts: SMTPConnection for the protocol (and two of its private fields, see offers and
 * setSocketTimeout). Failure: a setup that fails is reported once, through `failed`.
 */
import SMTPConnection, { type SMTPConnectionAuth, type SMTPConnectionOptions } from "nodemailer/lib/smtp-connection";
import { poolError } from "./relay-pool-errors.ts";
import type { Waiting } from "./relay-pool-queue.ts";

/** One session of the pool; the pool's parts read and set its fields. */
export interface Session {
  smtp: SMTPConnection;
  ready: boolean;
  current: Waiting | null;
  messages: number;
  idleTimer: ReturnType<typeof setTimeout> | null;
  gone: boolean;
  /**
   * RSET sent after a refused message, reply pending: the session takes no message until it
   * comes (SMTPConnection would pipeline MAIL behind it, and RSET's reply clears the new
   * envelope: the MAIL reply then throws inside nodemailer and kills the delivery thread).
   */
  resetting: boolean;
}

/**
 * Whether the session's relay announced `extension` in its (last) EHLO reply. SMTPConnection
 * keeps the list in a private field; if a nodemailer upgrade drops it, the answer is "yes",
 * today's behaviour (test/delivery/relay-envelope.test.ts checks the field is still there).
 */
export function offers(s: Session, extension: string): boolean {
  const list = (s.smtp as unknown as { _supportedExtensions?: unknown })._supportedExtensions;
  return !Array.isArray(list) || list.includes(extension);
}

/**
 * The SIZE the session's relay announced in its (last) EHLO reply, in bytes; null for none or
 * `SIZE 0` (no limit). SMTPConnection keeps it in a private field; without the field, null
 * (no limit known: forwards are not refused for size, today's behaviour).
 */
export function advertisedSize(s: Session): number | null {
  const size = (s.smtp as unknown as { _maxAllowedSize?: unknown })._maxAllowedSize;
  return typeof size === "number" && Number.isFinite(size) && size > 0 ? size : null;
}

/**
 * Has the MAIL FROM of the session's next send() carry SMTPUTF8 (RFC 6531 3.4), which
 * SMTPConnection adds only for a UTF-8 address, when the relay is known to offer it. send()
 * writes MAIL FROM synchronously: call the returned function right after it to put the command
 * writer back. Without those private fields, nothing changes (the message goes without the
 * parameter, as before): never SMTPUTF8 to a relay that may not know it.
 */
export function requestSmtpUtf8(s: Session): () => void {
  const conn = s.smtp as unknown as { _sendCommand?: (str: string, logStr?: string) => void; _supportedExtensions?: unknown };
  const original = conn._sendCommand;
  const offered = Array.isArray(conn._supportedExtensions) && conn._supportedExtensions.includes("SMTPUTF8");
  if (typeof original !== "function" || !offered) return () => undefined;
  const own = Object.hasOwn(conn, "_sendCommand");
  conn._sendCommand = function (this: unknown, str: string, logStr?: string) {
    const mail = /^MAIL FROM:<[^\r\n]*>/i.test(str) && !/ SMTPUTF8\b/i.test(str);
    original.call(this, mail ? `${str} SMTPUTF8` : str, logStr);
  };
  return () => {
    if (own) conn._sendCommand = original;
    else delete conn._sendCommand;
  };
}

/**
 * Sets the inactivity timeout of the session's socket (the TLS one after STARTTLS). SMTPConnection
 * sets it once, from socketTimeout, in a private field; without the field, nothing changes.
 */
export function setSocketTimeout(s: Session, ms: number | undefined): void {
  const socket = (s.smtp as unknown as { _socket?: { setTimeout?: unknown } })._socket;
  if (ms !== undefined && socket && typeof socket.setTimeout === "function") (socket as { setTimeout(ms: number): void }).setTimeout(ms);
}

export function newSession(connection: SMTPConnectionOptions): Session {
  return { smtp: new SMTPConnection(connection), ready: false, current: null, messages: 0, idleTimer: null, gone: false, resetting: false };
}

/** What a session's setup tells the pool: `ready` or `failed`, once; after `ready`, maybe `lostIdle` (again is harmless: drop). */
export interface SessionSetupEvents {
  /** Set up (and logged in when the relay offers AUTH): it can take a message. */
  ready(s: Session): void;
  /** Failed before it was usable (connection, greeting, EHLO, STARTTLS or TLS handshake, AUTH). */
  failed(s: Session, err: unknown): void;
  /** Closed, or an error, while it had no message: nothing more may be sent on it. */
  lostIdle(s: Session): void;
}

/** Connects the session and logs it in (null auth: never), reporting to `events`. */
export function setUpSession(s: Session, auth: SMTPConnectionAuth | null, events: SessionSetupEvents): void {
  let setUp = false;
  const fail = (err: unknown): void => {
    if (setUp) return;
    setUp = true;
    events.failed(s, err);
  };
  s.smtp.on("error", (err: unknown) => {
    if (!setUp) fail(err);
    // After setup, an error during a send reaches its callback; on an idle session it is the end.
    else if (s.current === null) events.lostIdle(s);
  });
  s.smtp.once("end", () => {
    if (!setUp) fail(poolError("Connection closed unexpectedly", "ECONNECTION"));
    else if (s.current === null) events.lostIdle(s);
  });
  s.smtp.connect((err) => {
    if (err) return fail(err);
    if (setUp || s.gone) return;
    if (auth === null || !s.smtp.allowsAuth) return ready();
    const offered = unusableAuthOffer(s.smtp);
    s.smtp.login(auth, (loginErr) => (loginErr ? fail(offered === null ? loginErr : withAuthOffer(loginErr, offered)) : ready()));
  });
  function ready(): void {
    if (setUp || s.gone) return;
    setUp = true;
    s.ready = true;
    events.ready(s);
  }
}

/**
 * How nodemailer logs in with a user and a password (SMTPConnection's list; it tries PLAIN when the
 * relay offers none of them). Not XOAUTH2: nodemailer uses it only with an OAuth2 token, which
 * mailgw never has; a relay offering only XOAUTH2 got the "check the password" hint.
 */
const USABLE_AUTH = ["PLAIN", "LOGIN", "CRAM-MD5"];

/**
 * The AUTH mechanisms the relay's EHLO offered when none is one nodemailer has (`NTLM GSSAPI`: an
 * Exchange receive connector without Basic authentication), else null. Read from the EHLO lines
 * SMTPConnection keeps in a private field; without the field, null (nothing changes).
 */
function unusableAuthOffer(smtp: SMTPConnection): string | null {
  const lines = (smtp as unknown as { _ehloLines?: unknown })._ehloLines;
  if (!Array.isArray(lines)) return null;
  const offered = lines.flatMap((l) => /^AUTH[\s=](.*)/i.exec(String(l))?.[1]?.trim().toUpperCase().split(/[\s=]+/) ?? []);
  return offered.length > 0 && !offered.some((m) => USABLE_AUTH.includes(m)) ? offered.join(" ") : null;
}

/**
 * The login's error with what the relay offered: its 504 ("Unrecognized authentication type")
 * otherwise read as a wrong password (relay-advice.ts names the fix from this text).
 */
function withAuthOffer(err: unknown, offered: string): unknown {
  if (!(err instanceof Error)) return err;
  err.message = `${err.message} (${AUTH_OFFER_PREFIX} ${offered})`;
  return err;
}

/** How withAuthOffer's note starts; relay-advice.ts looks for it. */
export const AUTH_OFFER_PREFIX = "the relay offers only AUTH";
