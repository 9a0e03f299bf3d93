/**
 * The TCP listener in front of smtp-server. It owns everything that happens before the SMTP
 * greeting: the connection limits (in all, and per client once its address is known), the
 * PROXY protocol header (v1 and v2, only from SMTP_PROXY_TRUSTED), and the SMTP_ALLOWED_IPS
 * check against the real client address (the per-client part in admission.ts).
 * Accepted sockets are handed to smtp-server with that address, so allow-lists, rate limits,
 * logs, the Received header and the rules all see the same client.
 *
 * Trusts: only the socket peer address, and a PROXY header only from a trusted peer.
 * Failure: refusals are one SMTP reply line and a close (421 for proxy problems and
 * overload, 554 5.7.1 for clients not allowed); a socket that errors or stalls is destroyed.
 * Nothing here can throw into the event loop: every socket has an error listener.
 *
 * Load balancers' health checks (HAProxy `check`, AWS NLB) connect every few seconds and reset
 * at once, with or without a PROXY header. Those are not clients: a socket already gone when
 * accepted, or one from a trusted proxy that leaves without sending a byte, is only a debug line;
 * a session the proxy opened for itself is marked so that session-end.ts can keep it out of the
 * info log when it carried no mail.
 */
import { createServer, type Server, type Socket } from "node:net";
import type { Logger } from "../log/logger.ts";
import { createAdmission } from "./admission.ts";
import type { GatewaySmtpServer } from "./connection.ts";
import { createIpMatcher, normalizeIp } from "./ip.ts";
import type { DescriptorGuard } from "./descriptor-guard.ts";
import type { SmtpLimits } from "./limits.ts";
import { PROXY_TIMEOUT_REASON, readProxyHeader, startsLikeProxyHeader } from "./proxy-protocol.ts";

export interface FrontOptions {
  smtp: GatewaySmtpServer;
  hostname: string;
  allowedIps: readonly string[];
  proxyProtocol: boolean;
  proxyTrusted: readonly string[];
  limits: SmtpLimits;
  logger: Logger;
  /** A connection refused before any SMTP session existed (for the session log and counters). */
  onRefused(client: string, reply: string): void;
  /**
   * The file-descriptor guard once listening (descriptor-guard.ts): while it says the process is
   * out of descriptors, a new client is answered 421 and closed at once, which frees its
   * descriptor for the next one.
   */
  descriptors?: () => Pick<DescriptorGuard, "short" | "noteRefused"> | null;
}

export interface Front {
  server: Server;
  /** Sockets still sending their PROXY header. */
  pending: Set<Socket>;
  /**
   * The stop: closes the sockets still sending their PROXY header. Mailgw closed them, not the
   * proxy: no "PROXY header refused … disconnected" warning, nor a session line with a 421 that
   * was never sent, for each.
   */
  dropPending(): void;
}

const ignore = (): void => {};

/**
 * The connection limit reached (or a stray PROXY header) is a warning at most this often, with
 * the connections refused since the last one: each refusal is also its own info session line,
 * but at LOG_LEVEL=warn nothing said that senders were being turned away, and a flood must not
 * make a warning per client.
 */
const WARNING_INTERVAL_MS = 60_000;

/** Counts an event; calls `warn` with it and the number of events since the last warning, at most every interval. */
function throttledWarning<T>(warn: (latest: T, since: number) => void): (latest: T) => void {
  let warnedAt = -Infinity;
  let since = 0;
  return (latest: T): void => {
    since++;
    const now = performance.now();
    if (now - warnedAt < WARNING_INTERVAL_MS) return;
    warn(latest, since);
    warnedAt = now;
    since = 0;
  };
}

/** Counts a connection refused because the limit in all is reached; warns at most every interval. */
function overloadWarning(opts: Pick<FrontOptions, "logger" | "limits">): () => void {
  const warn = throttledWarning<null>((_, refused) => opts.logger.warn("SMTP connection limit reached: new clients get 421", { max_clients: opts.limits.maxClients, refused }));
  return () => warn(null);
}

/**
 * Without SMTP_PROXY_PROTOCOL, a proxy that sends a PROXY header (nginx `proxy_protocol on`,
 * HAProxy `send-proxy`) has every connection answered `421 You talk too soon` by smtp-server (an
 * early talker): all mail is deferred, and the session lines, at info level, did not say why.
 * Watches a socket's first bytes, sent before the greeting, and warns (at most every interval)
 * with the fix.
 */
function strayProxyHeaderWatch(opts: Pick<FrontOptions, "logger">): (socket: Socket, peer: string) => void {
  const warn = throttledWarning<string>((peer, connections) =>
    opts.logger.warn("a PROXY protocol header arrived but SMTP_PROXY_PROTOCOL is off: such connections get 421 and their mail is deferred", {
      peer,
      connections,
      hint: "set SMTP_PROXY_PROTOCOL=true (with the proxy's address in SMTP_PROXY_TRUSTED), or stop the proxy sending the header",
    }),
  );
  return (socket, peer) => {
    // First in line, before smtp-server's parser answers it: nothing written yet means the
    // bytes came before the greeting, as a proxy's header does.
    socket.prependOnceListener("data", (chunk: Buffer) => {
      if (socket.bytesWritten === 0 && Buffer.isBuffer(chunk) && startsLikeProxyHeader(chunk)) warn(peer);
    });
  };
}

export function createFront(opts: FrontOptions): Front {
  const { admit, refuse } = createAdmission(opts);
  const trusted = createIpMatcher(opts.proxyTrusted);
  const noteOverload = overloadWarning(opts);
  const watchStrayProxyHeader = strayProxyHeaderWatch(opts);
  const pending = new Set<Socket>();
  let dropping = false;

  const readProxy = async (socket: Socket, peer: string): Promise<void> => {
    pending.add(socket);
    const header = await readProxyHeader(socket, opts.limits.proxyHeaderTimeoutMs);
    pending.delete(socket);
    if (dropping) {
      opts.logger.debug("connection closed by the stop while its PROXY header was awaited", { peer });
      return void socket.destroy();
    }
    if (header.kind === "closed" && header.bytes === 0) {
      opts.logger.debug("proxy connection closed before any byte (a TCP health check)", { peer });
      return void socket.destroy();
    }
    if (header.kind !== "ok") {
      const reason = header.kind === "closed" ? "disconnected before the PROXY header" : header.reason;
      opts.logger.warn("PROXY header refused", { peer, reason });
      // A client that sent nothing in time is told so, not that its (absent) header was wrong.
      const text = header.kind === "invalid" && header.reason === PROXY_TIMEOUT_REASON ? "No PROXY protocol header in time" : "Invalid PROXY protocol header";
      return refuse(socket, peer, `421 4.7.0 ${opts.hostname} ${text}`);
    }
    // LOCAL / UNKNOWN, or a v1 check that carries the proxy's own endpoints (HAProxy does).
    const proxyOwn = header.source === null || header.source.address === peer;
    admit(socket, header.source?.address ?? peer, header.source?.port ?? socket.remotePort, proxyOwn);
  };

  // Half-open: a client that shuts down its sending side right after the final dot (a script's
  // `nc -N`, shutdown(SHUT_WR)) still reads the reply. Without it the socket was closed on the
  // client's FIN: the message was stored but its 250 never sent, so the client would send it
  // again. GatewayConnection closes our side once every reply owed is sent.
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on("error", ignore);
    // Bun reports no address for a socket the peer reset before this callback ran (a health
    // check's connect-and-reset): nobody is left to refuse, and "" would be logged as a client.
    if (socket.remoteAddress === undefined) {
      opts.logger.debug("connection reset before it was accepted");
      return void socket.destroy();
    }
    const peer = normalizeIp(socket.remoteAddress);
    const descriptors = opts.descriptors?.() ?? null;
    if (descriptors?.short()) {
      descriptors.noteRefused();
      // "Too many connections": counted and labelled with the connection limit's refusals.
      return refuse(socket, peer, `421 4.3.2 ${opts.hostname} Too many connections (out of file descriptors), try again later`, false, false);
    }
    if (pending.size + opts.smtp.connections.size >= opts.limits.maxClients) {
      noteOverload();
      return refuse(socket, peer, `421 4.7.0 ${opts.hostname} Too many connections, try again later`);
    }
    if (!opts.proxyProtocol) {
      admit(socket, peer, socket.remotePort);
      return watchStrayProxyHeader(socket, peer);
    }
    if (!trusted(peer)) {
      return refuse(socket, peer, `421 4.7.0 ${opts.hostname} PROXY protocol accepted only from trusted proxies`);
    }
    void readProxy(socket, peer);
  });
  // Before it listens, an error is the bind's: listen() in listen.ts turns it into the one
  // start-up error naming SMTP_HOST/SMTP_PORT (logged here as well, it came out twice).
  server.on("error", (err) => {
    if (server.listening) opts.logger.error("SMTP listener error", { error: err.message });
  });
  const dropPending = (): void => {
    dropping = true;
    for (const socket of pending) socket.destroy();
  };
  return { server, pending, dropPending };
}
