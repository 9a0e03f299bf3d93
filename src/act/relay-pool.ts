/**
 * A small pool of nodemailer SMTPConnections to one relay. relay.ts uses it instead of
 * nodemailer's Mail + smtp-pool layers: a forward is already a complete RFC 5322 message, so
 * the composer (MimeNode build, address re-parsing, Message-ID generation, one stream pipeline
 * per message) only cost CPU — measured ~190 µs per 4 KB message through sendMail against
 * ~70 µs through SMTPConnection.send, which does the SMTP work itself (EHLO, STARTTLS,
 * SASL, PIPELINING, dot-stuffing, TCP_NODELAY).
 *
 * Pool rules (nodemailer's smtp-pool semantics, kept): at most `maxConnections` sessions, one
 * message at a time on each; a session is opened only when a message waits and is logged in
 * (SASL) only when the relay offers AUTH, after STARTTLS when it is required (SMTPConnection
 * refuses to go on without it, so credentials never travel in clear); recycled after
 * `maxMessagesPerConnection`; closed after `idleTimeoutMs` idle. A healthy session is ended with
 * QUIT (RFC 5321 4.1.1.10: never just closed; relays log that as a lost connection: Exim's
 * "SMTP connection … lost", Postfix's "lost connection after AUTH"), one in an unknown state
 * (a send that failed or was aborted mid-message) is closed at once. A message whose reused
 * session turns out dead before its DATA started goes out once more on a fresh session
 * (`maxRequeues`); a 5xx/4xx to the envelope or data keeps the session (RSET) for the next.
 * A session that cannot be set up while others work caps the pool at those for a while
 * (`setupRetryMs`): relays that allow fewer connections refuse the extra ones with 421.
 * Timeouts: a job's `deadlineMs` runs until its data is all handed to the socket; then only the
 * relay's reply to the end of data is awaited, up to `finalReplyTimeoutMs` of silence (RFC 5321
 * 4.5.3.2.6: 10 minutes). The relay has the message by then: giving up early sends a duplicate.
 *
 * Trusts: SMTPConnection for the protocol. Failure: never rejects; every send resolves to
 * { ok: true, info } or { ok: false, error } with nodemailer's error (code, responseCode,
 * command) for relay.ts to classify. A failed session setup fails the waiting messages when
 * no other session is up (relay down or misconfigured: the queue retries them with backoff).
 *
 * This file only connects the parts: the waiting messages (relay-pool-queue.ts), the sessions
 * (relay-pool-session-set.ts; one session's setup: relay-pool-session.ts), when one may open
 * (relay-pool-opener.ts) and one message on one session (relay-pool-transaction.ts).
 */
import { createSessionOpener } from "./relay-pool-opener.ts";
import { createMessageQueue } from "./relay-pool-queue.ts";
import { createSessionSet } from "./relay-pool-session-set.ts";
import type { Session } from "./relay-pool-session.ts";
import { runMessage, type TransactionPool } from "./relay-pool-transaction.ts";
import type { RelayPool, RelayPoolOptions } from "./relay-pool-types.ts";

export { isPoolClosedError } from "./relay-pool-errors.ts";
export { SETUP_RETRY_MS } from "./relay-pool-opener.ts";
export { QUIT_TIMEOUT_MS } from "./relay-pool-session-set.ts";
export type { RelayPool, RelayPoolJob, RelayPoolOptions, RelayPoolResult } from "./relay-pool-types.ts";

export function createRelayPool(opts: RelayPoolOptions): RelayPool {
  const sessions = createSessionSet();
  const queue = createMessageQueue({ dispatch, abandon });
  const opener = createSessionOpener(opts, sessions, { release, dispatch, failAll: queue.failAll });
  const transactionPool: TransactionPool = { opts, release, relayFailed: opener.setupFailed, drop: sessions.drop, dispatch, requeue: queue.requeue };

  function abandon(s: Session): void {
    s.current = null;
    sessions.drop(s);
  }

  function dispatch(): void {
    if (queue.isClosed()) return;
    let opening = sessions.opening();
    while (queue.count() > 0) {
      const idle = sessions.idle();
      if (idle !== null) {
        runMessage(idle, queue.next(), transactionPool);
        continue;
      }
      if (!opener.mayOpen(opening, queue.count())) return;
      opener.open();
      opening++;
    }
  }

  /** The session can take the next message (or is retired). */
  function release(s: Session): void {
    if (s.gone) return;
    if (queue.isClosed() || s.messages >= opts.maxMessagesPerConnection) {
      void sessions.retire(s);
      dispatch();
      return;
    }
    sessions.keepIdle(s, opts.idleTimeoutMs);
    dispatch();
  }

  return {
    send: queue.send,
    async close() {
      queue.close();
      await sessions.closeIdle();
    },
    sessions: () => sessions.size(),
  };
}
