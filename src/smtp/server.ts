/**
 * The SMTP listener (SPEC §4): smtp-server 3.21 behind our own TCP front (front.ts), with
 * the gateway policy in its handlers: STARTTLS (required or not), per-client rate limit at
 * MAIL, the domain and routing-trick check at RCPT, DATA via data-handler.ts, one log line
 * per session. It knows nothing of storage or delivery: messages go to the MessageSink.
 * This file assembles the pieces: what smtp-server offers (smtp-options.ts), the sessions'
 * state and log line (session-registry.ts, session-end.ts), MAIL/RCPT (envelope-handlers.ts),
 * DATA (data-handler.ts), the TCP front (front.ts), the bind (listen.ts).
 *
 * Depends only on its deps object. Trusts nothing from clients.
 * Failure: start-up problems (TLS files, port in use) reject/throw with a message naming the
 * variable or file; per-session problems become SMTP replies and never stop the server.
 */
import type { SMTPServerOptions } from "smtp-server";
import type { Config } from "../config/config.ts";
import type { Logger } from "../log/logger.ts";
import type { MessageSink } from "../types.ts";
import { GatewaySmtpServer } from "./connection.ts";
import { createDataHandler } from "./data-handler.ts";
import { startDescriptorGuard, type DescriptorGuard } from "./descriptor-guard.ts";
import { createEnvelopeHandlers } from "./envelope-handlers.ts";
import { createFront } from "./front.ts";
import { listen } from "./listen.ts";
import { maxClientsForFiles, openFileLimit, resolveLimits, type SmtpLimits } from "./limits.ts";
import type { SessionSummary } from "./session-log.ts";
import { createSessionEnd } from "./session-end.ts";
import { createSessionRegistry } from "./session-registry.ts";
import { createShutdown } from "./shutdown.ts";
import { protocolOptions } from "./smtp-options.ts";
import { refusalReason, refusalReasonOfLine, type RefusalReason } from "./refusals.ts";
import { createTlsManager, type TlsManager, type TlsStatus } from "./tls-manager.ts";

export { probeSmtpPort } from "./listen.ts";

export interface SmtpServerDeps {
  smtp: Config["smtp"];
  logger: Logger;
  sink: MessageSink;
  /** The domains of the rules currently in force (changes on hot reload). */
  domains: () => readonly string[];
  limits?: Partial<SmtpLimits>;
  /** Called once per session when it ends (counters `session` / `session_tls`). */
  onSessionEnd?: (summary: SessionSummary) => void;
  /** Called for every reply, or refused connection, by which the gateway itself refused a client (refusals.ts). */
  onRefusal?: (reason: RefusalReason) => void;
  /** Clock of session durations (and, when set, of the rate limiter); default monotonic. */
  now?: () => number;
  /**
   * Whether a message that declared SIZE=`bytes` fits on the disk now (a cached figure: called
   * on the event loop for every such MAIL; a promise when a "no" is checked on a new reading,
   * store/free-space.ts); false → 452 4.3.1. Without it every size fits.
   */
  roomFor?: (bytes: number) => boolean | Promise<boolean>;
}

export interface SmtpServerHandle {
  /** Starts listening on smtp.host:smtp.port; resolves with the bound address. */
  listen(): Promise<{ host: string; port: number }>;
  /** Re-reads the TLS key/cert; false (and logged) when the new files are unusable. */
  reloadTls(): boolean;
  /** The STARTTLS certificate in force and the last reload's refusal; null when TLS is off. */
  tlsStatus(): TlsStatus | null;
  /** Stops accepting, lets transactions in flight finish (bounded), closes the rest with 421. */
  close(graceMs?: number): Promise<void>;
  /** Open SMTP sessions (for health checks and tests). */
  sessionCount(): number;
  /** True while the process is out of file descriptors and new clients get 421 (descriptor-guard.ts). */
  outOfDescriptors(): boolean;
}

export function createSmtpServer(deps: SmtpServerDeps): SmtpServerHandle {
  const limits = withinOpenFileLimit(resolveLimits(deps.limits), deps.logger);
  // Monotonic: it only measures how long sessions take (the log's duration_ms), and a wall
  // clock stepped by NTP during a session made that the step (a day) or 0.
  const now = deps.now ?? (() => performance.now());
  const cfg = deps.smtp;
  const tls: TlsManager | null = cfg.tls.enabled ? createTlsManager(cfg.tls, deps.logger) : null;
  const sessions = createSessionRegistry(now);
  const sessionEnd = createSessionEnd({ sessions, logger: deps.logger, now, onSessionEnd: deps.onSessionEnd });
  const { stateOf } = sessions;
  const envelope = createEnvelopeHandlers({ smtp: cfg, rateLimitTrackedClients: limits.rateLimitTrackedClients, now: deps.now, domains: deps.domains, stateOf, roomFor: deps.roomFor });

  const options: SMTPServerOptions = {
    ...protocolOptions(cfg, limits, tls),
    ...sessions.lifecycle,
    onClose: sessionEnd.onClose,
    onMailFrom: envelope.onMailFrom,
    onRcptTo: envelope.onRcptTo,
    onData: createDataHandler({ sink: deps.sink, logger: deps.logger, smtp: cfg, limits, stateOf }),
  };

  const smtp = new GatewaySmtpServer(options, {
    sessionTimeoutMs: limits.sessionTimeoutMs,
    dataTimeoutMs: limits.dataTimeoutMs,
    bareLfEndWaitMs: limits.bareLfEndWaitMs,
    maxErrors: limits.maxErrors,
    onReply: (session, code, reply) => {
      sessions.noteReply(session, code, reply);
      const refusal = deps.onRefusal && refusalReason(code, reply);
      if (refusal) deps.onRefusal?.(refusal);
    },
    isStoring: sessions.isStoring,
    onMailRefused: envelope.noteRefusedSender,
    onRcptRefused: envelope.noteRefusedRecipient,
    tlsRequired: cfg.tls.required,
  });
  smtp.on("error", (err: Error) => deps.logger.debug("SMTP connection error", { error: err.message }));
  sessions.noteErrorsOf(smtp);
  tls?.attach(smtp);

  let descriptors: DescriptorGuard | null = null;
  const front = createFront({
    smtp,
    hostname: cfg.hostname,
    allowedIps: cfg.allowedIps,
    proxyProtocol: cfg.proxyProtocol,
    proxyTrusted: cfg.proxyTrusted,
    limits,
    logger: deps.logger,
    onRefused: (client, reply) => {
      sessionEnd.noteRefused(client, reply);
      const refusal = deps.onRefusal && refusalReasonOfLine(reply);
      if (refusal) deps.onRefusal?.(refusal);
    },
    descriptors: () => descriptors,
  });
  const shutdown = createShutdown({ smtp, front, isStoring: sessions.anyStoring, unlogged: sessions.unlogged });

  return {
    listen: () =>
      listen(front.server, cfg.host, cfg.port, () => {
        tls?.watch();
        descriptors ??= startDescriptorGuard({ logger: deps.logger });
      }),
    reloadTls: () => tls?.reload() ?? false,
    tlsStatus: () => tls?.status() ?? null,
    async close(graceMs = limits.shutdownGraceMs) {
      tls?.unwatch();
      descriptors?.stop();
      await shutdown(graceMs);
    },
    sessionCount: () => smtp.connections.size,
    outOfDescriptors: () => descriptors?.short() ?? false,
  };
}

/** Lowers limits.maxClients (with a warning) when the process may not open that many files. */
function withinOpenFileLimit(limits: SmtpLimits, logger: Logger): SmtpLimits {
  const fileLimit = openFileLimit();
  const maxClients = maxClientsForFiles(limits.maxClients, fileLimit);
  if (maxClients < limits.maxClients) {
    logger.warn("the open-file limit lowers the SMTP connection limit", {
      open_file_limit: fileLimit, max_clients: maxClients, without_it: limits.maxClients,
      hint: "raise LimitNOFILE (systemd), --ulimit nofile (Docker) or ulimit -Hn",
    });
    limits.maxClients = maxClients;
  }
  return limits;
}
