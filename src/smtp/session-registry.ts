/**
 * The open SMTP sessions' bookkeeping: one SessionState per smtp-server session id, from
 * connect to close, and the one log line written when a session ends (session-log.ts), or at
 * once for a connection the front refused before any session existed. The MAIL/RCPT/DATA
 * handlers note into a session's state through stateOf(); only this file creates and removes
 * states, so the Map is bounded by the open sessions (MAX_CLIENTS).
 * Separate from server.ts: the session lifecycle (connect, STARTTLS, replies, errors, close)
 * is one piece of state with its own rules, whatever policy the command handlers apply.
 */
import type { SMTPServerOptions, SMTPServerSession } from "smtp-server";
import type { Logger } from "../log/logger.ts";
import { isProxyOwnSession, repliesAfterClientEnd, type GatewaySmtpServer } from "./connection.ts";
import { isNotableReply, logSession, newSessionState, noteConnectionError, noteTlsEstablished, startedNoMail, summarize, type SessionState, type SessionSummary } from "./session-log.ts";

export interface SessionRegistry {
  /** The session's state, created on first use. */
  stateOf(session: SMTPServerSession): SessionState;
  /** smtp-server's onConnect, onSecure and onClose: a session's state from start to log line. */
  lifecycle: Required<Pick<SMTPServerOptions, "onConnect" | "onSecure" | "onClose">>;
  /** ConnectionHooks.onReply: every reply line written to a session. */
  noteReply(session: SMTPServerSession, code: number, text: string): void;
  /** ConnectionHooks.isStoring: the session's message is being stored (deadlines wait). */
  isStoring(session: SMTPServerSession): boolean;
  /** Any session's message is being stored (the graceful stop waits for it). */
  anyStoring(): boolean;
  /** A connection refused before any SMTP session existed: its line and counters at once. */
  noteRefused(client: string, reply: string): void;
  /** Connection errors smtp-server reports only with a session id go to that session's line. */
  noteErrorsOf(smtp: GatewaySmtpServer): void;
}

export function createSessionRegistry(opts: {
  logger: Logger;
  /** Clock of session durations (monotonic unless a test sets one). */
  now: () => number;
  /** Called once per session when it ends (counters `session` / `session_tls`). */
  onSessionEnd: ((summary: SessionSummary) => void) | undefined;
}): SessionRegistry {
  const { logger, now } = opts;
  const states = new Map<string, SessionState>();

  const stateOf = (session: SMTPServerSession): SessionState => {
    let state = states.get(session.id);
    if (!state) {
      state = newSessionState(session.id, session.remoteAddress, now());
      states.set(session.id, state);
    }
    return state;
  };
  const endSession = (summary: SessionSummary): void => {
    logSession(logger, summary);
    opts.onSessionEnd?.(summary);
  };

  const lifecycle: SessionRegistry["lifecycle"] = {
    onConnect(session, callback) {
      stateOf(session);
      callback();
    },
    onSecure(socket, session, callback) {
      // After STARTTLS: the negotiated protocol and cipher, for the session line and Received.
      if ("getProtocol" in socket) noteTlsEstablished(stateOf(session), socket);
      // A client that half-closes after the final dot still gets its 250 over TLS as well.
      repliesAfterClientEnd(socket);
      callback();
    },
    onClose(session) {
      const state = states.get(session.id) ?? newSessionState(session.id, session.remoteAddress, now());
      const closedAt = now();
      state.tls = state.tls || Boolean(session.secure);
      state.helo = state.helo || session.hostNameAppearsAs || "";
      const log = (): void => {
        states.delete(session.id);
        const summary = summarize(state, closedAt);
        // A proxy's health check every few seconds would otherwise fill the log and the session
        // counter; it is not a client's session unless it started a transaction.
        if (isProxyOwnSession(session) && startedNoMail(summary)) return logSession(logger, summary, "debug");
        endSession(summary);
      };
      // The client left while its message was being received or stored. The line waits for the
      // outcome: it was written without the id of a message kept all the same (the client saw
      // no reply and may send it again), which then appeared in no log line at all.
      if (state.receiving) {
        state.afterReceiving = () => {
          state.error ??= "connection closed before the reply to DATA";
          log();
        };
        return;
      }
      log();
    },
  };

  return {
    stateOf,
    lifecycle,
    noteReply(session, code, text) {
      if (isNotableReply(code, text)) stateOf(session).reply = `${code} ${text}`;
      // smtp-server answers 221 to QUIT only.
      if (code === 221) stateOf(session).quitAnswered = true;
    },
    isStoring: (session) => states.get(session.id)?.storing ?? false,
    anyStoring: () => [...states.values()].some((s) => s.storing),
    noteRefused(client, reply) {
      const state = newSessionState("-", client, now());
      state.reply = reply;
      endSession(summarize(state, now()));
    },
    noteErrorsOf: (smtp) => noteErrorsBySession(smtp, states),
  };
}

/**
 * smtp-server gives a connection's error (a failed TLS handshake, a reset) with its session id
 * only to its logger, then emits it without the id. With `logger: false` every level is a no-op
 * function on `server.logger`; only `error` is replaced, to note the error for the session's
 * log line (the other levels, called for every command, stay no-ops).
 */
function noteErrorsBySession(smtp: GatewaySmtpServer, states: ReadonlyMap<string, SessionState>): void {
  const lib = smtp as unknown as { logger?: Record<string, unknown> };
  if (typeof lib.logger?.error !== "function") return;
  lib.logger.error = (data: unknown, _format: unknown, id: unknown): void => {
    const entry = data as { tnx?: unknown; err?: unknown } | null;
    if (entry?.tnx !== "error" || typeof id !== "string") return;
    const state = states.get(id);
    if (state) noteConnectionError(state, entry.err);
  };
}
