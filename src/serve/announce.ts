/**
 * What `mailgw serve` says about itself: the start line (version, addresses, TLS, relay,
 * domains) and the warnings about relay settings that are accepted but look wrong, at start
 * and after a SIGHUP. Separate from the wiring: log text only, never the credentials.
 */
import { relaySettingWarnings } from "../act/relay-advice.ts";
import type { Config, RelayConfig } from "../config/config.ts";
import { hostPort } from "../host-port.ts";
import type { Logger } from "../log/logger.ts";
import { VERSION_STRING } from "../version.ts";

/**
 * Domains named in the start line; the rest are counted. A list of 50,000 domains made it a
 * ~1 MB line, which journald splits at 48 KB and a log viewer shows as one unreadable wall.
 */
const ANNOUNCED_DOMAINS_MAX = 20;

export function announce(logger: Logger, config: Config, smtp: { host: string; port: number } | null, domains: readonly string[], httpUrl: string): void {
  logger.info("mailgw serve started", {
    version: VERSION_STRING,
    smtp: smtp ? hostPort(smtp.host, smtp.port) : null,
    http: httpUrl,
    hostname: config.smtp.hostname,
    tls: config.smtp.tls.enabled,
    tls_required: config.smtp.tls.required,
    proxy_protocol: config.smtp.proxyProtocol,
    relay: describeRelay(config.relay),
    domains: domains.slice(0, ANNOUNCED_DOMAINS_MAX),
    // Only when the list is cut: says how many the listed ones are out of.
    domains_total: domains.length > ANNOUNCED_DOMAINS_MAX ? domains.length : undefined,
  });
  warnRelaySettings(logger, config.relay);
}

/** `host:port (mode)` for the log; never the credentials. */
export function describeRelay(relay: RelayConfig | null): string {
  if (relay === null) return "none";
  return `${hostPort(relay.host, relay.port)} (${relay.secure}${relay.secure !== "none" && !relay.tlsVerify ? ", certificate not verified" : ""}${relay.user !== null ? ", SASL" : ""})`;
}

/** Settings accepted but likely wrong (TLS mode vs port, `none` off this machine): said at start and reload. */
export function warnRelaySettings(logger: Logger, relay: RelayConfig | null): void {
  if (relay === null) return;
  for (const warning of relaySettingWarnings(relay)) logger.warn("relay settings look wrong", { warning });
}
