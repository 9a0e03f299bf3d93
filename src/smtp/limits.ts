import { readFileSync } from "node:fs";

/**
 * Limits of the SMTP listener, each a named constant with its unit and the abuse it stops.
 * `createSmtpServer` takes a partial override (tests shorten the timeouts); every override
 * is validated here, so a 0 or a negative value is refused instead of silently turning a
 * limit off.
 */

export interface SmtpLimits {
  /** Idle time while the client owes us a command or data (smtp-server socketTimeout). */
  idleTimeoutMs: number;
  /** Whole DATA phase, from 354 to the final dot. */
  dataTimeoutMs: number;
  /** Whole session, greeting to close, whatever the client does. */
  sessionTimeoutMs: number;
  /** Time a client on a PROXY listener has to send the complete PROXY header. */
  proxyHeaderTimeoutMs: number;
  /** Concurrent SMTP sessions plus sockets still sending their PROXY header. */
  maxClients: number;
  /** Concurrent SMTP sessions of one client (IPv4 address or IPv6 /64); loopback is exempt. */
  maxClientConnections: number;
  /** RCPT TO per transaction; more → 452 4.5.3. */
  maxRecipients: number;
  /** Error replies (4xx/5xx) a session may collect without delivering mail; then 421 and close. */
  maxErrors: number;
  /** `Received:` headers a message may carry before it is refused as a loop (554 5.4.6). */
  maxReceivedHeaders: number;
  /** Client IPs (or IPv6 /64s) the rate limiter remembers at once. */
  rateLimitTrackedClients: number;
  /** On SIGTERM, how long sessions in the middle of a transaction may take to finish. */
  shutdownGraceMs: number;
  /** How long DATA may rest at a bare-LF dot line (`\n.\n`) before the 421 that says so (bare-lf-end.ts). */
  bareLfEndWaitMs: number;
}

/** Clients that open a session and go quiet hold a descriptor each; RFC 5321 asks for minutes. */
export const IDLE_TIMEOUT_MS = 120_000;
/** A client trickling one byte per idle period would otherwise hold a DATA phase for days. */
export const DATA_TIMEOUT_MS = 10 * 60_000;
/** Same trickle, spread over many commands (NOOP loops) instead of DATA. */
export const SESSION_TIMEOUT_MS = 30 * 60_000;
/** A proxy sends its header at once; a client that does not is not a proxy. */
export const PROXY_HEADER_TIMEOUT_MS = 5_000;
/** Connection floods: each session costs a socket, buffers and up to a message in memory. */
export const MAX_CLIENTS = 500;
/**
 * One address holding idle connections (trickling a NOOP within each idle timeout) took every
 * slot of MAX_CLIENTS and locked all other senders out. Postfix's
 * smtpd_client_connection_count_limit is 50 too; like its default exception ($mynetworks with
 * mynetworks_style=host), loopback clients are exempt: a local proxy without the PROXY
 * protocol, local scripts and benchmarks.
 */
export const MAX_CONNECTIONS_PER_CLIENT = 50;
/** RFC 5321 §4.5.3.1.8 minimum is 100; more is a fan-out amplifier. */
export const MAX_RECIPIENTS = 100;
/**
 * A relay or address probe pipelined thousands of RCPTs into one session, each answered 550, for
 * as long as it liked. Postfix's smtpd_hard_error_limit is 20 too, counted, like it, only while
 * no mail is delivered (a queued message starts the count again); recipients past MAX_RECIPIENTS
 * (452 4.5.3, a big mailing) are not errors.
 */
export const MAX_ERRORS_PER_SESSION = 20;
/** RFC 5321 §6.3 loop detection; Postfix uses 50 as well (hopcount_limit). */
export const MAX_RECEIVED_HEADERS = 50;
/** Rate-limiter memory bound: a scan from many addresses cannot grow the table without limit. */
export const RATE_LIMIT_TRACKED_CLIENTS = 50_000;
/** SIGTERM: sessions in the middle of a transaction get this long to finish. */
export const SHUTDOWN_GRACE_MS = 10_000;
/**
 * A client that ended its message with `\n.\n` waits for a reply that never comes (only
 * CRLF.CRLF ends DATA): it is told why after this long instead of the idle timeout's bare 421.
 * Well above a network's pauses (a few TCP retransmissions), well below IDLE_TIMEOUT_MS, which
 * a script's user takes for a hang.
 */
export const BARE_LF_END_WAIT_MS = 10_000;
/**
 * Longest command line parsed (smtp-server maxCommandLength, replaced by long-lines.ts): a longer
 * one is answered `500 5.5.2 Error: line too long` and skipped without being buffered, and the
 * session goes on. A 10,000-byte line is parsed (and answered as what it says).
 */
export const MAX_COMMAND_LINE_BYTES = 16 * 1024;
/** PROXY v1 lines are at most 107 bytes (spec); anything longer is not a proxy. */
export const PROXY_V1_MAX_BYTES = 107;
/** PROXY v2 address block + TLVs (AWS/Azure add ~50 bytes); bounds what we buffer per socket. */
export const PROXY_V2_MAX_PAYLOAD_BYTES = 1024;

export const DEFAULT_LIMITS: SmtpLimits = {
  idleTimeoutMs: IDLE_TIMEOUT_MS,
  dataTimeoutMs: DATA_TIMEOUT_MS,
  sessionTimeoutMs: SESSION_TIMEOUT_MS,
  proxyHeaderTimeoutMs: PROXY_HEADER_TIMEOUT_MS,
  maxClients: MAX_CLIENTS,
  maxClientConnections: MAX_CONNECTIONS_PER_CLIENT,
  maxRecipients: MAX_RECIPIENTS,
  maxErrors: MAX_ERRORS_PER_SESSION,
  maxReceivedHeaders: MAX_RECEIVED_HEADERS,
  rateLimitTrackedClients: RATE_LIMIT_TRACKED_CLIENTS,
  shutdownGraceMs: SHUTDOWN_GRACE_MS,
  bareLfEndWaitMs: BARE_LF_END_WAIT_MS,
};

/** Defaults merged with overrides; every value must be a positive integer. */
export function resolveLimits(overrides: Partial<SmtpLimits> = {}): SmtpLimits {
  const limits: SmtpLimits = { ...DEFAULT_LIMITS };
  for (const [key, value] of Object.entries(overrides) as [keyof SmtpLimits, number | undefined][]) {
    if (value === undefined) continue;
    if (!Number.isInteger(value) || value <= 0) {
      throw new RangeError(`SMTP limit ${key}=${value} must be a positive integer`);
    }
    limits[key] = value;
  }
  return limits;
}

/** The text of the 552 for a message over MAX_MESSAGE_SIZE_MB (serve, and `mailgw test`'s note). */
export function oversizeReplyText(maxMessageBytes: number): string {
  return `5.3.4 Message size exceeds fixed maximum message size ${maxMessageBytes}`;
}

/**
 * Descriptors kept for everything but SMTP sessions: the database (three connections, each with
 * its file, WAL and index), logs, the spool and archive files of post-250 work, relay and webhook
 * connections, HTTP clients, file watches, worker threads' pipes, the descriptor guard's reserve
 * (descriptor-guard.ts), and the TXT queries of SPF/DKIM/DMARC checks (parse/dns-txt.ts
 * MAX_QUERIES_IN_FLIGHT): about 36 at rest; at 64, a silent name server's queries and the
 * sessions' spool files at the end of DATA ran the process out of them.
 */
export const FILE_DESCRIPTOR_RESERVE = 96;

/**
 * The connection limit the process's open-file limit can carry: each SMTP session holds its
 * socket and, during DATA, its spool file. Past the file limit the listener cannot accept (the
 * clients wait in the backlog with no greeting while accept() fails in a loop, a core busy,
 * until descriptor-guard.ts sees it) and a DATA already under way may get 451 for want of a
 * spool file; under it, a client gets the 421.
 */
export function maxClientsForFiles(maxClients: number, openFileLimit: number | null): number {
  if (openFileLimit === null) return maxClients;
  return Math.max(1, Math.min(maxClients, Math.floor((openFileLimit - FILE_DESCRIPTOR_RESERVE) / 2)));
}

/** The lowest open-file limit serve runs under: the reserve and one session (socket and spool file). */
export const MIN_OPEN_FILES = FILE_DESCRIPTOR_RESERVE + 2;

/**
 * Why serve cannot run under `openFileLimit`, or null when it can. Under ~44 files it died half
 * started with Bun's own "ran out of file descriptors" (or an error naming a file it failed to
 * open); between that and MIN_OPEN_FILES it started, but a session could take the descriptors
 * its own database and spool files need.
 */
export function tooFewOpenFiles(openFileLimit: number | null): string | null {
  if (openFileLimit === null || openFileLimit >= MIN_OPEN_FILES) return null;
  return `the open-file limit (${openFileLimit}) is too low for mailgw serve: it needs at least ${MIN_OPEN_FILES} ` +
    `(${FILE_DESCRIPTOR_RESERVE} for its database, logs, threads and DNS queries, 2 per SMTP session); ` +
    "raise LimitNOFILE (systemd), --ulimit nofile (Docker) or ulimit -Hn";
}

/** RLIMIT_NOFILE's soft limit as the process has it (Bun raises it to the hard limit at start); null if unknown or unlimited. */
export function openFileLimit(read: () => string = () => readFileSync("/proc/self/limits", "utf8")): number | null {
  try {
    const m = /^Max open files\s+(\d+)\s/m.exec(read());
    return m?.[1] ? Number(m[1]) : null;
  } catch {
    return null;
  }
}
