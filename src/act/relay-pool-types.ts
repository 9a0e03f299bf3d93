/**
 * The relay pool's boundary types (relay-pool.ts): what relay.ts hands it and gets back. Apart
 * from the pool's parts so each of them can name a job or a result without importing the pool.
 */
import type { SMTPConnectionAuth, SMTPConnectionOptions, SMTPConnectionSendInfo } from "nodemailer/lib/smtp-connection";

export interface RelayPoolJob {
  from: string;
  to: string[];
  /** Complete message, CRLF line endings; the pool breaks lines over 998 octets (long-lines.ts), SMTPConnection dot-stuffs it. */
  raw: Buffer;
  /** Bytes above 127 in `raw`: declared with BODY=8BITMIME when the relay offers it, else converted (RFC 6152). */
  eightBit?: boolean;
  /**
   * An envelope address only SMTPUTF8 can carry (relay-envelope.ts): a session whose relay does
   * not offer it refuses the job before MAIL FROM (553 5.6.7, as Postfix) and stays usable.
   */
  smtpUtf8Address?: string | null;
  /**
   * The client declared SMTPUTF8 (relay-envelope.ts declaredSmtpUtf8): MAIL FROM carries it to a
   * relay that offers it, as Postfix does; a relay that does not gets the message without it.
   */
  smtpUtf8Declared?: boolean;
  /** Aborting fails the job and closes the session it was using. */
  signal: AbortSignal;
  /**
   * Fails the job (as timed out, closing its session) if its data is not all sent by then: a relay
   * that stalls before or during the transfer. Not applied to the wait for the final reply.
   */
  deadlineMs?: number;
}

/**
 * `relayDown` on a failure: true when no session could be set up for it (connection, greeting,
 * EHLO, STARTTLS or TLS handshake, AUTH), the relay answered 421 (closing the channel, RFC 5321
 * 3.8) or the session died without a reply (connection closed or reset, socket timeout): the
 * relay's failure, not the message's; false when it failed on a session that was set up (a reply
 * to MAIL, RCPT or DATA: the relay works); absent when that is not known: no session was tried
 * for it (the pool closed), or it was aborted (its deadline, the caller's signal) before a reply.
 */
export type RelayPoolResult = { ok: true; info: SMTPConnectionSendInfo } | { ok: false; error: unknown; relayDown?: boolean };

export interface RelayPoolOptions {
  connection: SMTPConnectionOptions;
  /** null: never log in. */
  auth: SMTPConnectionAuth | null;
  maxConnections: number;
  maxMessagesPerConnection: number;
  idleTimeoutMs: number;
  /** Times a message may move to a fresh session after a reused one died before its DATA. */
  maxRequeues: number;
  /**
   * After a session failed to set up while others were up or opening (a relay that allows
   * fewer connections than maxConnections answers the extra ones 421): no new session for this
   * long, the messages wait for the working ones. Default SETUP_RETRY_MS.
   */
  setupRetryMs?: number;
  /**
   * Socket inactivity allowed while waiting for the reply to the end of data, instead of
   * connection.socketTimeout (restored after it). Default: no change.
   */
  finalReplyTimeoutMs?: number;
  /** A session is set up: the largest message its relay advertised (EHLO SIZE), null for none. */
  onSessionReady?: (maxMessageBytes: number | null) => void;
}

export interface RelayPool {
  send(job: RelayPoolJob): Promise<RelayPoolResult>;
  /**
   * Waiting messages fail at once with an error `isPoolClosedError` recognizes (none of their
   * bytes was sent: the caller may hand them to a new pool); sessions end with QUIT (a busy one
   * after its message). Resolves once the idle ones have (at most QUIT_TIMEOUT_MS).
   */
  close(): Promise<void>;
  /** Open or opening sessions (tests, health). */
  sessions(): number;
}
