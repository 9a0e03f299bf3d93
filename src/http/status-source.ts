/**
 * StatusSource: the live facts the HTTP server shows but does not own (SMTP listener, rules
 * runtime, relay, process start). `serve` passes an adapter over the real components, so
 * http/ never imports another stage's internals and tests can pass plain objects.
 * Trusts: the values it is given (they come from this process, not from the network).
 * Failure: none here; a getter that throws is reported by the caller as an internal error.
 */

import { hostPort } from "../host-port.ts";

export interface RulesStatus {
  /** Version of the rules in force (e.g. a content hash or mtime), null before the first load. */
  version: string | null;
  /** When the rules in force were loaded (unix ms), null before the first load. */
  loadedAt: number | null;
  /** Why the last reload was refused, null when the last reload succeeded. */
  lastError: string | null;
  /** When the last reload was refused (unix ms). */
  lastErrorAt: number | null;
  /** Reloads since start (the initial load is not counted). */
  reloads: { ok: number; failed: number };
}

export interface RelayStatus {
  configured: boolean;
  /** host:port for display; never credentials. */
  address: string | null;
  /**
   * The relay failed itself (connection, TLS, login) and is suspended: forwards wait for one probe
   * (queue/relay-suspension.ts). Unix ms; `reason` is the failure. null when it is not.
   */
  suspended: { since: number; until: number; reason: string } | null;
}

export interface TlsCertificateStatus {
  /** Validity of the certificate in force (unix ms); null when it cannot be parsed. */
  notBefore: number | null;
  notAfter: number | null;
  /** Whether the last reload of the key and certificate was refused (the log says why). */
  reloadRefused: boolean;
}

export interface StatusSource {
  /** Process start (unix ms), shown as when it started. */
  readonly startedAt: number;
  /**
   * Seconds serve has run, by the monotonic clock; without it, uptime is counted from
   * `startedAt` by the wall clock, which NTP can step (tests pass plain objects).
   */
  uptimeSeconds?(): number;
  /** Whether the SMTP listener is accepting connections. */
  smtpListening(): boolean;
  /** Whether the process is out of file descriptors, so new SMTP clients get 421 (smtp/descriptor-guard.ts). */
  smtpOutOfDescriptors?(): boolean;
  /** Whether STARTTLS is offered (and required). */
  smtpTls(): { enabled: boolean; required: boolean };
  rules(): RulesStatus;
  relay(): RelayStatus;
  /**
   * Why the last commit of a received message failed and a write still fails now, null when the
   * last one succeeded (or none yet) or a write goes through again (store/write-probe.ts).
   */
  databaseWriteFailure?(): string | null | Promise<string | null>;
  /** Pipeline.fileWriteFailure(): the last message file (spool or archive) that could not be written. */
  fileWriteFailure?(): string | null | Promise<string | null>;
  /** The STARTTLS certificate in force; null when STARTTLS is off. */
  tlsCertificate?(): TlsCertificateStatus | null;
  /** Why SPF/DKIM/DMARC checks the rules need cannot get DNS answers, in words safe for /healthz; null when they can. */
  dnsWarning?(): string | null;
  /** File systems with less free space than the message size limit needs (store/free-space.ts), in words safe for /healthz. */
  diskWarnings?(): string[];
  /**
   * What `mailgw queue` needs to find this serve's queue from any directory (`--data-dir /var/lib/mailgw`):
   * the stats page's retry commands carry it. "" when not known (tests).
   */
  queueCommandArgs?: string;
}

/** The shapes `serve` already has, described structurally so http/ imports none of them. */
export interface StatusParts {
  startedAt: number;
  /** Milliseconds since the start by the monotonic clock (performance.now() minus its value then). */
  uptimeMs?: () => number;
  smtpListening: () => boolean;
  /** SmtpServerHandle.outOfDescriptors(). */
  smtpOutOfDescriptors?: () => boolean;
  tls: { enabled: boolean; required: boolean };
  /** The relay in force (config.relay; may change on SIGHUP), null when none is configured. */
  relay: () => { host: string; port: number } | null;
  /** The relay suspension on record (queue/relay-suspension.ts readSuspension), null when none. */
  relaySuspension?: () => { relay: string; since: number; until: number; reason: string } | null;
  /** RulesRuntime.status(). */
  rules: () => {
    version: string;
    loadedAt: Date;
    lastError: string | null;
    lastErrorAt: Date | null;
    reloads: { ok: number; error: number };
  };
  /** Pipeline.databaseWriteFailure(), rechecked by a write. */
  databaseWriteFailure?: () => string | null | Promise<string | null>;
  /** Pipeline.fileWriteFailure(). */
  fileWriteFailure?: () => string | null | Promise<string | null>;
  /** SmtpServerHandle.tlsStatus(). */
  tlsStatus?: () => { certificate: { notBefore: Date; notAfter: Date } | null; reloadError: string | null } | null;
  /** serve/resolver-notice.ts's warning for the rules in force. */
  dnsWarning?: () => string | null;
  /** FreeSpaceMonitor.warnings(). */
  diskWarnings?: () => string[];
  /** serve's data directory, and its database when not the default file in it (absolute), for the commands the stats page suggests. */
  storage?: { dataDir: string; ownDatabase: string | null };
}

/** Adapts serve's components to a StatusSource (dates to unix ms, never credentials). */
export function createStatusSource(parts: StatusParts): StatusSource {
  const { uptimeMs } = parts;
  return {
    startedAt: parts.startedAt,
    ...(uptimeMs ? { uptimeSeconds: () => Math.floor(uptimeMs() / 1000) } : {}),
    smtpListening: parts.smtpListening,
    smtpOutOfDescriptors: () => parts.smtpOutOfDescriptors?.() ?? false,
    smtpTls: () => ({ enabled: parts.tls.enabled, required: parts.tls.required }),
    databaseWriteFailure: () => parts.databaseWriteFailure?.() ?? null,
    fileWriteFailure: () => parts.fileWriteFailure?.() ?? null,
    dnsWarning: () => parts.dnsWarning?.() ?? null,
    diskWarnings: () => parts.diskWarnings?.() ?? [],
    queueCommandArgs: parts.storage ? queueCommandArgs(parts.storage) : "",
    tlsCertificate() {
      const s = parts.tlsStatus?.() ?? null;
      if (s === null) return null;
      return { notBefore: s.certificate?.notBefore.getTime() ?? null, notAfter: s.certificate?.notAfter.getTime() ?? null, reloadRefused: s.reloadError !== null };
    },
    relay() {
      const r = parts.relay();
      if (!r) return { configured: false, address: null, suspended: null };
      const address = hostPort(r.host, r.port);
      const s = parts.relaySuspension?.() ?? null;
      // One recorded for another relay (a reload changed it) is not this one's; the worker drops it.
      return { configured: true, address, suspended: s !== null && s.relay === address ? { since: s.since, until: s.until, reason: s.reason } : null };
    },
    rules() {
      const s = parts.rules();
      return {
        version: s.version,
        loadedAt: s.loadedAt.getTime(),
        lastError: s.lastError,
        lastErrorAt: s.lastErrorAt ? s.lastErrorAt.getTime() : null,
        reloads: { ok: s.reloads.ok, failed: s.reloads.error },
      };
    },
  };
}

/**
 * Uptime for /stats, /healthz and /metrics: the monotonic one when the source has it. By the
 * wall clock, a step back of an hour showed 0 for an hour (a "restarted" alert) and a step
 * forward of a day added a day.
 */
export function uptimeSeconds(status: StatusSource, now: number): number {
  return Math.max(0, status.uptimeSeconds?.() ?? Math.floor((now - status.startedAt) / 1000));
}

/**
 * `mailgw queue` run from another directory than serve's (an admin's shell, with a systemd unit
 * whose variables come from its EnvironmentFile) reads ./data: the flags that name serve's own
 * data directory, and its database when that is not the default file in it. Quoted for a POSIX shell.
 */
function queueCommandArgs(s: { dataDir: string; ownDatabase: string | null }): string {
  // The bare path (absolute): as `file:…`, a `#` or `?` in it was refused as a fragment or query.
  const own = s.ownDatabase === null ? "" : ` --database-url ${shellWord(s.ownDatabase)}`;
  return ` --data-dir ${shellWord(s.dataDir)}${own}`;
}

/** A word the shell reads back as `w`: as it is when it is made of safe characters, else in single quotes. */
function shellWord(w: string): string {
  return /^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`;
}
