/**
 * Whether a client, its real address known (after the PROXY header, if any), gets an SMTP
 * session: SMTP_ALLOWED_IPS, then its open sessions against MAX_CONNECTIONS_PER_CLIENT
 * (loopback exempt); and how any connection is refused before the greeting: one reply line,
 * then the socket is destroyed. Separate from front.ts, which decides what to do with a socket
 * as it arrives (overload, PROXY header): this is the per-client policy both paths end in.
 */
import type { Socket } from "node:net";
import type { FrontOptions } from "./front.ts";
import { clientKey, createIpMatcher } from "./ip.ts";

export interface Admission {
  /** Hands the socket to smtp-server as `client`, or refuses it. */
  admit(socket: Socket, client: string, port: number | undefined, proxyOwn?: boolean): void;
  /**
   * `proxyOwn`: a proxy's health check, refused all the same but only as a debug line, not a session.
   * `linger` false: the socket is closed as soon as the reply is written (out of descriptors).
   */
  refuse(socket: Socket, client: string, reply: string, proxyOwn?: boolean, linger?: boolean): void;
}

/** A refused socket gets this long to receive its reply line before it is destroyed. */
const REFUSAL_LINGER_MS = 1000;
/**
 * Refused sockets kept open for REFUSAL_LINGER_MS at once. Each holds a descriptor that the
 * connection limit does not count (limits.ts maxClientsForFiles): a flood of clients that keep
 * their sockets after the 421 took every descriptor left, accept() then failed with EMFILE in a
 * loop (a core busy) and the clients behind them waited seconds in the backlog for a reply. Past
 * this many, a refused socket is closed as soon as its reply is written (a client that already
 * sent something may then see a reset instead of the 421: either way it tries again later).
 */
const MAX_LINGERING_REFUSALS = 16;

/** Clients exempt from the per-client connection limit (limits.ts MAX_CONNECTIONS_PER_CLIENT). */
const LOOPBACK = ["127.0.0.0/8", "::1/128"];

export function createAdmission(opts: Pick<FrontOptions, "smtp" | "hostname" | "allowedIps" | "limits" | "logger" | "onRefused">): Admission {
  const allowed = createIpMatcher(opts.allowedIps);
  const loopback = createIpMatcher(LOOPBACK);

  let lingering = 0;

  const refuse = (socket: Socket, client: string, reply: string, proxyOwn = false, linger = true): void => {
    if (proxyOwn) opts.logger.debug("proxy's own connection refused (a health check)", { client, reply });
    else opts.onRefused(client, reply);
    if (socket.destroyed || !socket.writable) return void socket.destroy();
    if (!linger || lingering >= MAX_LINGERING_REFUSALS) {
      socket.end(`${reply}\r\n`, () => socket.destroy());
    } else {
      lingering++;
      socket.once("close", () => lingering--);
      socket.end(`${reply}\r\n`);
    }
    setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS).unref();
  };

  const admit = (socket: Socket, client: string, port: number | undefined, proxyOwn = false): void => {
    if (socket.destroyed) return;
    // An allow-list of senders that leaves out the proxy's own address refuses its checks too,
    // every few seconds: that is the admin's choice, but not worth a log line each time.
    if (!allowed(client)) return refuse(socket, client, `554 5.7.1 ${opts.hostname} Access denied`, proxyOwn);
    if (!loopback(client) && opts.smtp.connectionsOf(clientKey(client)) >= opts.limits.maxClientConnections) {
      return refuse(socket, client, `421 4.7.0 ${opts.hostname} Too many connections from your address, try again later`, proxyOwn);
    }
    opts.smtp.connect(socket, { remoteAddress: client, remotePort: port }, proxyOwn);
  };

  return { admit, refuse };
}
