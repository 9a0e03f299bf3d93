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
    s.smtp.login(auth, (loginErr) => (loginErr ? fail(loginErr) : ready()));
  });
  function ready(): void {
    if (setUp || s.gone) return;
    setUp = true;
    s.ready = true;
    events.ready(s);
  }
}
