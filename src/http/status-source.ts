/**
 * StatusSource: the live facts the HTTP server shows but does not own (SMTP listener, rules
 * runtime, relay, process start). `serve` passes an adapter over the real components, so
 * http/ never imports another stage's internals and tests can pass plain objects.
 * Trusts: the values it is given (they come from this process, not from the network).
 * Failure: none here; a getter that throws is reported by the caller as an internal error.
 */

export interface RulesStatus {
  /** Version of the rules in force (e.g. a content hash or mtime), null before the first load. */
  version: string | null;
  /** When the rules in force were loaded (unix ms), null before the first load. */
  loadedAt: number | null;
  /** Why the last reload was refused, null when the last reload succeeded. */
  lastError: string | null;
  /** When the last reload was refused (unix ms). */
  lastErrorAt: number | null;
  /** Reloads since start, first load included. */
  reloads: { ok: number; failed: number };
}

export interface RelayStatus {
  configured: boolean;
  /** host:port for display; never credentials. */
  address: string | null;
}

export interface StatusSource {
  /** Process start (unix ms), for uptime. */
  readonly startedAt: number;
  /** Whether the SMTP listener is accepting connections. */
  smtpListening(): boolean;
  /** Whether STARTTLS is offered (and required). */
  smtpTls(): { enabled: boolean; required: boolean };
  rules(): RulesStatus;
  relay(): RelayStatus;
}
