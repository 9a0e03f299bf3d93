/**
 * Advice on relay settings that mailgw accepts but that rarely do what the admin meant
 * (SPEC §2 RELAY_*): a TLS mode that does not fit the port (implicit TLS to the STARTTLS port
 * 587, STARTTLS to the implicit-TLS port 465) and `none` towards a relay off this machine (mail
 * and password in clear). Used for warnings at start and reload, and to add a hint to the
 * errors those mistakes produce, which name neither the setting nor the fix
 * ("WRONG_VERSION_NUMBER", "Greeting never received", "self signed certificate").
 *
 * Trusts: a validated RelayConfig. Failure: none; pure functions, never throw.
 */
import type { RelayConfig } from "../config/config.ts";
import { isLoopbackHost } from "../host-port.ts";
import { AUTH_OFFER_PREFIX } from "./relay-pool-session.ts";
import { RELAY_GREETING_TIMEOUT_MS } from "./relay.ts";

/** Ports where the relay speaks plain SMTP first and upgrades with STARTTLS. */
const STARTTLS_PORTS = new Set([25, 587]);
/** The submissions port: TLS from the first byte (RFC 8314). */
const IMPLICIT_TLS_PORT = 465;

/** Warnings for the log (one line each, naming the variables); [] when the settings look right. */
export function relaySettingWarnings(relay: RelayConfig): string[] {
  const warnings: string[] = [];
  if (relay.secure === "tls" && STARTTLS_PORTS.has(relay.port)) {
    warnings.push(
      `RELAY_SMTP_SECURE=tls starts TLS at once (implicit TLS, port 465), but RELAY_SMTP_PORT=${relay.port} is a STARTTLS port: ` +
        `set RELAY_SMTP_SECURE=starttls, or RELAY_SMTP_PORT=465`,
    );
  }
  if (relay.secure !== "tls" && relay.port === IMPLICIT_TLS_PORT) {
    warnings.push(`RELAY_SMTP_PORT=465 expects TLS from the first byte, but RELAY_SMTP_SECURE=${relay.secure} waits for a plain greeting: set RELAY_SMTP_SECURE=tls`);
  }
  if (relay.secure === "none" && !isLoopbackHost(relay.host)) {
    const what = relay.user !== null ? "forwarded mail and RELAY_SMTP_PASS go" : "forwarded mail goes";
    warnings.push(`RELAY_SMTP_SECURE=none: ${what} unencrypted to ${relay.host}; use starttls (587) or tls (465) unless the relay is on this machine`);
  }
  return warnings;
}

/**
 * A hint to put before a failed attempt's error (first, so `queue list`'s shortened column
 * still shows what to change), or null when the error needs none.
 */
export function relayErrorHint(relay: Pick<RelayConfig, "secure" | "tlsVerify" | "user">, error: string): string | null {
  if (/\b530\b/.test(error) && /auth/i.test(error)) {
    return relay.user === null
      ? "the relay requires a login: set RELAY_SMTP_USER and RELAY_SMTP_PASS"
      : "the relay refused mail without a login although RELAY_SMTP_USER is set (it offered no AUTH here: check RELAY_SMTP_SECURE and the relay's AUTH settings)";
  }
  const offer = new RegExp(`${AUTH_OFFER_PREFIX} ([^)]*)`).exec(error);
  if (offer) {
    return `the relay offers no login mailgw can use (AUTH ${offer[1]}; mailgw logs in with PLAIN or LOGIN, over TLS): enable one of them at the relay (Exchange: Basic authentication on the receive connector)`;
  }
  if (/\bEAUTH\b/.test(error) && /\b535\b|invalid login/i.test(error)) {
    return "the relay refused the login: check RELAY_SMTP_USER and RELAY_SMTP_PASS";
  }
  if (relay.secure === "starttls" && /upgrading connection with STARTTLS/i.test(error)) {
    // The relay answered STARTTLS with an error (500: it has none, 454: not now); nothing was
    // sent in the clear. The raw text ("500 Error: command not recognized") names no setting.
    return (
      "the relay refused STARTTLS, which RELAY_SMTP_SECURE=starttls requires (no password was sent): " +
      "turn STARTTLS on at the relay, use its TLS port (RELAY_SMTP_SECURE=tls, RELAY_SMTP_PORT=465), " +
      "or set RELAY_SMTP_SECURE=none for a relay on this machine only"
    );
  }
  if (relay.secure === "tls" && /wrong[_ ]version[_ ]number|packet length too long|unknown protocol/i.test(error)) {
    return "relay answered in plain text, not TLS: set RELAY_SMTP_SECURE=starttls (a submission port, as 587, starts in plain text), or RELAY_SMTP_PORT to the relay's TLS port (465)";
  }
  if (relay.secure !== "tls" && /greeting never received/i.test(error)) {
    // A relay that greets late (overloaded, a postscreen-style greet delay) looks the same as
    // a port that waits for a TLS handshake: name both.
    return `no SMTP greeting within ${RELAY_GREETING_TIMEOUT_MS / 1000} s: the relay is overloaded or slow to greet, or the port expects TLS at once (port 465: set RELAY_SMTP_SECURE=tls)`;
  }
  if (relay.tlsVerify) return certificateHint(error);
  return null;
}

/** Names what is wrong with the certificate: a self-signed one is not fixed by a host name. */
function certificateHint(error: string): string | null {
  if (/altnames|does not match/i.test(error)) {
    return "relay certificate refused (RELAY_SMTP_HOST is not a name it covers): set RELAY_SMTP_HOST to a name the certificate lists";
  }
  if (/self[- ]signed|unable to (verify|get local issuer)/i.test(error)) {
    // A private CA is trusted by adding it, which keeps the check on: named first, so that
    // `queue list`'s shortened column shows it; turning the check off comes last.
    return (
      "relay certificate refused (not signed by a trusted CA): trust its CA with NODE_EXTRA_CA_CERTS=<CA PEM file> " +
      "(README: Forwarding through a relay), give the relay a certificate from a public CA, " +
      "or set RELAY_SMTP_TLS_VERIFY=false if it is a private smarthost"
    );
  }
  if (/certificate/i.test(error)) return "relay certificate refused: renew or fix the relay's certificate, or set RELAY_SMTP_TLS_VERIFY=false if it is a private smarthost";
  return null;
}
