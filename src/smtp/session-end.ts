/**
 * When a session's one log line (session-log.ts) is written and counted (onSessionEnd): at
 * close; after the DATA handler settles when the client left during it; only at debug for a
 * proxy's own health check that carried no mail; at once for a connection the front refused
 * before any session existed. Separate from session-registry.ts, which keeps the states: this
 * decides when a state becomes a line, and removes it from the registry then.
 */
import type { SMTPServerOptions } from "smtp-server";
import type { Logger } from "../log/logger.ts";
import { isProxyOwnSession } from "./session-records.ts";
import type { SessionRegistry } from "./session-registry.ts";
import { logSession, newSessionState, noteDataCutShort, startedNoMail, summarize, type SessionSummary } from "./session-log.ts";

export interface SessionEnd {
  /** smtp-server's onClose. */
  onClose: NonNullable<SMTPServerOptions["onClose"]>;
  /** A connection refused before any SMTP session existed: its line and counters at once. */
  noteRefused(client: string, reply: string): void;
}

export function createSessionEnd(opts: {
  sessions: Pick<SessionRegistry, "find" | "remove">;
  logger: Logger;
  /** Clock of session durations (the registry's). */
  now: () => number;
  /** Called once per session when it ends (counters `session` / `session_tls`). */
  onSessionEnd: ((summary: SessionSummary) => void) | undefined;
}): SessionEnd {
  const { sessions, logger, now } = opts;
  const endSession = (summary: SessionSummary): void => {
    logSession(logger, summary);
    opts.onSessionEnd?.(summary);
  };

  return {
    onClose(session) {
      const state = sessions.find(session.id) ?? newSessionState(session.id, session.remoteAddress, now());
      const closedAt = now();
      state.tls = state.tls || Boolean(session.secure);
      state.helo = state.helo || session.hostNameAppearsAs || "";
      const log = (): void => {
        sessions.remove(session.id);
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
          noteDataCutShort(state);
          log();
        };
        return;
      }
      log();
    },
    noteRefused(client, reply) {
      const state = newSessionState("-", client, now());
      state.reply = reply;
      endSession(summarize(state, now()));
    },
  };
}
