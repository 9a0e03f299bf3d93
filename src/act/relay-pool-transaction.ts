/**
 * One message on one session of the relay pool (relay-pool.ts): what the session's relay must
 * offer for it (SMTPUTF8, 8BITMIME or a 7-bit copy), the SMTP transaction, and what its outcome
 * means for the message (settled or sent again) and for the session (next message, RSET,
 * closed, or the relay down). Separate from the scheduling: the pool decides which session takes
 * which message; this says what became of both.
 *
 * Trusts: SMTPConnection for the protocol. Failure: every outcome settles the message (or
 * requeues it) and hands the session back to the pool.
 */
import type SMTPConnection from "nodemailer/lib/smtp-connection";
import { breakLongLines } from "./long-lines.ts";
import { downgradeTo7bit } from "./mime-downgrade.ts";
import { grownPastSize, smtpUtf8Missing, TRANSIENT_CODES } from "./relay-pool-errors.ts";
import { settle, type Waiting } from "./relay-pool-queue.ts";
import { advertisedSize, offers, requestSmtpUtf8, setSocketTimeout, type Session } from "./relay-pool-session.ts";
import type { RelayPoolOptions } from "./relay-pool-types.ts";

/** What the pool does with a session, or a message, once the message has an outcome. */
export interface TransactionPool {
  readonly opts: RelayPoolOptions;
  /** The session can take the next message (or is retired). */
  release(s: Session): void;
  /** The relay failed on the session (421, or no reply): as when a setup fails. */
  relayFailed(s: Session, err: unknown): void;
  /** Closes a session whose state is unknown or broken. */
  drop(s: Session): void;
  /** Hand waiting messages to sessions. */
  dispatch(): void;
  /** The message, none of it sent, goes first again (MessageQueue.requeue). */
  requeue(w: Waiting): void;
}

/** Sends the message on the session, which is set up and idle. */
export function runMessage(s: Session, w: Waiting, pool: TransactionPool): void {
  const needs = w.job.smtpUtf8Address;
  if (needs && !offers(s, "SMTPUTF8")) {
    // Nothing was sent: the session stays idle and dispatch's loop hands it the next message.
    settle(w, { ok: false, error: smtpUtf8Missing(needs), relayDown: false });
    return;
  }
  // RFC 6152: 8-bit data only to a relay that offers 8BITMIME; for one that does not, the
  // message is converted (mime-downgrade.ts), as Postfix does. Lines over 998 octets are broken
  // after that (long-lines.ts), as Postfix's smtp_line_length_limit: the conversion's
  // quoted-printable keeps a long 8-bit line's text whole, which a break would not.
  const downgrade = w.job.eightBit === true && !offers(s, "8BITMIME");
  const raw = downgrade ? (w.sevenBit ??= breakLongLines(downgradeTo7bit(w.job.raw))) : (w.asSent ??= breakLongLines(w.job.raw));
  // SIZE (RFC 1870): grown on the way past the relay's limit, a message within it as received
  // got nodemailer's "Message size larger than allowed" in `queue list`, next to a size that is
  // not. Refused here for good all the same (retrying cannot shrink it), saying what grew.
  const limit = advertisedSize(s);
  if (limit !== null && raw.length > limit && w.job.raw.length <= limit) {
    settle(w, { ok: false, error: grownPastSize(raw.length, w.job.raw.length, limit, downgrade), relayDown: false });
    return;
  }
  s.current = w;
  w.session = s;
  const reused = s.messages > 0;
  let dataStarted = false;
  // SMTPConnection pipes a stream-like message into its data stream once the envelope is
  // accepted; this one-call "stream" tells us whether DATA began (requeue only before that).
  const message = {
    pipe(dest: NodeJS.WritableStream): void {
      dataStarted = true;
      // 'end': the dot-stuffed data and the final dot are all in the socket's hands.
      (dest as unknown as NodeJS.ReadableStream).once("end", () => s.current === w && awaitFinalReply(s, w, pool.opts));
      dest.end(raw);
    },
  } as unknown as NodeJS.ReadableStream as Parameters<SMTPConnection["send"]>[1];
  // SIZE= (RFC 1870, when offered): a relay with a lower limit refuses at MAIL FROM, not after the transfer.
  const envelope = { from: w.job.from, to: w.job.to, use8BitMime: w.job.eightBit === true && !downgrade, size: raw.length };
  // The client's SMTPUTF8 goes on to a relay that offers it, as Postfix passes it on; to one
  // that does not, the message goes without it (Postfix bounces it: mailgw keeps sending what
  // such relays took before). A UTF-8 address gets it from SMTPConnection itself.
  const restore = w.job.smtpUtf8Declared === true ? requestSmtpUtf8(s) : null;
  try {
    s.smtp.send(envelope, message, (err, info) => {
      s.messages++;
      if (s.current !== w) return; // aborted: the session was dropped already
      finishMessage(s, w, err, info, reused && !dataStarted, pool);
    });
  } finally {
    // Also if send() threw: a wrapper left on the pooled session would add SMTPUTF8 to every later MAIL.
    restore?.();
  }
}

/** The message is sent: the deadline no longer applies, the relay gets its time to answer. */
function awaitFinalReply(s: Session, w: Waiting, opts: RelayPoolOptions): void {
  w.dataSent = true;
  if (w.deadline) clearTimeout(w.deadline);
  w.deadline = null;
  if (opts.finalReplyTimeoutMs !== undefined) setSocketTimeout(s, opts.finalReplyTimeoutMs);
}

/** The transaction's outcome; `reusedBeforeData`: on a reused session, and DATA had not begun. */
function finishMessage(
  s: Session,
  w: Waiting,
  err: SMTPConnection.SMTPError | null,
  info: SMTPConnection.SentMessageInfo,
  reusedBeforeData: boolean,
  pool: TransactionPool,
): void {
  if (pool.opts.finalReplyTimeoutMs !== undefined) setSocketTimeout(s, pool.opts.connection.socketTimeout);
  s.current = null;
  if (!err && info) {
    settle(w, { ok: true, info });
    return pool.release(s);
  }
  const code = typeof err?.code === "string" ? err.code : "";
  const responseCode = typeof err?.responseCode === "number" ? err.responseCode : 0;
  if (w.dataSent && TRANSIENT_CODES.has(code)) return lostAfterData(s, w, err, code, pool);
  const dead = TRANSIENT_CODES.has(code) || responseCode === 421;
  if (reusedBeforeData && dead && w.requeues < pool.opts.maxRequeues) {
    w.requeues++;
    w.session = null;
    pool.drop(s);
    return pool.requeue(w);
  }
  // 421, or the relay closing the connection or going silent without a reply (throttled,
  // overloaded, its backend broken): a failure of the relay, not of this message (Postfix
  // throttles the destination on "lost connection" and "timed out" too). Each waiting message
  // would open a session only to meet the same; they fail with it, as at setup.
  if (code === "EMESSAGE") withRcptRefusals(s, err);
  settle(w, { ok: false, error: err, relayDown: dead });
  if (dead) return pool.relayFailed(s, err);
  if ((code === "EENVELOPE" || code === "EMESSAGE") && !s.gone) return resetAfterRefusal(s, pool);
  pool.drop(s);
  pool.dispatch();
}

/**
 * A refusal of the data (its reply to the end of data) says nothing about the recipients refused
 * at RCPT before it, whose replies nodemailer leaves off that error: they are put on it as
 * `rejectedErrors` (as on an all-refused error) so relay.ts can give each its own outcome.
 * SMTPConnection keeps them in a private field; without it, nothing changes.
 */
function withRcptRefusals(s: Session, err: SMTPConnection.SMTPError | null): void {
  const envelope = (s.smtp as unknown as { _envelope?: { rejectedErrors?: unknown } })._envelope;
  const refusals = envelope?.rejectedErrors;
  // A reply number: a refusal by the relay, not nodemailer's own SIZE check before MAIL (the field still holds the last envelope).
  if (err && typeof err.responseCode === "number" && Array.isArray(refusals) && refusals.length > 0) Object.assign(err, { rejectedErrors: [...refusals] });
}

/**
 * The connection went (or went silent) after the whole message and its final dot were sent: the
 * relay took the transaction as far as the data, so it is up, and what failed may be this
 * message (a content scanner that crashes on it, a proxy that cuts big transfers). It is this
 * message's temporary failure, on its own backoff, as Postfix's "lost connection ... while
 * sending end of data": treated as the relay's, it suspended the relay, came due again with
 * every held forward when the next message lifted the suspension, and was sent again about once
 * a retry period for days, stalling the other forwards each time. The relay may have kept it, so
 * the error says a copy may arrive twice.
 */
function lostAfterData(s: Session, w: Waiting, err: SMTPConnection.SMTPError | null, code: string, pool: TransactionPool): void {
  const error = Object.assign(new Error(`no reply to the end of data (${err?.message ?? code}): the relay may have the message, so it may arrive twice`), { code });
  settle(w, { ok: false, error, relayDown: false });
  pool.drop(s);
  pool.dispatch();
}

/** The relay refused the envelope or the data: RSET keeps the session for the next message. */
function resetAfterRefusal(s: Session, pool: TransactionPool): void {
  s.resetting = true;
  s.smtp.reset((resetErr) => {
    s.resetting = false;
    if (resetErr) {
      pool.drop(s);
      pool.dispatch();
    } else pool.release(s);
  });
}
