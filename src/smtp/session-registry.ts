/**
 * The open SMTP sessions' bookkeeping: one SessionState per smtp-server session id, created at
 * connect (or first use), noted into by every handler through stateOf(), removed when its log
 * line is written (session-end.ts), so the Map is bounded by the open sessions (MAX_CLIENTS).
 * Here too what smtp-server reports about a session outside the command handlers: the STARTTLS
 * outcome, every reply line, connection errors. Separate from server.ts: one piece of state
 * with its own rules, whatever policy the command handlers apply.
 */
import type { SMTPServerOptions, SMTPServerSession } from "smtp-server";
import type { GatewaySmtpServer } from "./connection.ts";
import { repliesAfterClientEnd } from "./half-open.ts";
import { isNotableReply, newSessionState, noteConnectionError, noteTlsEstablished, type SessionState } from "./session-log.ts";

export interface SessionRegistry {
  /** The session's state, created on first use. */
  stateOf(session: SMTPServerSession): SessionState;
  /** A session's state when there is one; never creates it. */
  find(id: string): SessionState | undefined;
  /** Forgets a session (its line is written). */
  remove(id: string): void;
  /** smtp-server's onConnect and onSecure. */
  lifecycle: Required<Pick<SMTPServerOptions, "onConnect" | "onSecure">>;
  /** ConnectionHooks.onReply: every reply line written to a session. */
  noteReply(session: SMTPServerSession, code: number, text: string): void;
  /** ConnectionHooks.isStoring: the session's message is being stored (deadlines wait). */
  isStoring(session: SMTPServerSession): boolean;
  /** Any session's message is being stored (the graceful stop waits for it). */
  anyStoring(): boolean;
  /** Sessions whose line is not written yet (the graceful stop waits for them, bounded). */
  unlogged(): number;
  /** Connection errors smtp-server reports only with a session id go to that session's line. */
  noteErrorsOf(smtp: GatewaySmtpServer): void;
}

/** `now`: clock of session durations (monotonic unless a test sets one). */
export function createSessionRegistry(now: () => number): SessionRegistry {
  const states = new Map<string, SessionState>();

  const stateOf = (session: SMTPServerSession): SessionState => {
    let state = states.get(session.id);
    if (!state) {
      state = newSessionState(session.id, session.remoteAddress, now());
      states.set(session.id, state);
    }
    return state;
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
  };

  return {
    stateOf,
    find: (id) => states.get(id),
    remove: (id) => void states.delete(id),
    lifecycle,
    noteReply(session, code, text) {
      if (isNotableReply(code, text)) stateOf(session).reply = `${code} ${text}`;
      // smtp-server answers 221 to QUIT only.
      if (code === 221) stateOf(session).quitAnswered = true;
    },
    isStoring: (session) => states.get(session.id)?.storing ?? false,
    anyStoring: () => [...states.values()].some((s) => s.storing),
    unlogged: () => states.size,
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
