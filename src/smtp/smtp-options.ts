/**
 * What smtp-server offers and enforces on its own: the EHLO name and extensions (no AUTH, no
 * REQUIRETLS, STARTTLS only with a certificate), the limits it applies itself, and the TLS
 * material STARTTLS starts with (tls-manager.ts swaps it on reload). Separate from server.ts:
 * the protocol surface, fixed at start, apart from the handlers that run per command.
 */
import type { SMTPServerOptions } from "smtp-server";
import type { Config } from "../config/config.ts";
import { ADDRESS_PARSER_OPTIONS } from "./lenient-syntax.ts";
import { MAX_COMMAND_LINE_BYTES, type SmtpLimits } from "./limits.ts";
import type { TlsManager } from "./tls-manager.ts";

export function protocolOptions(cfg: Config["smtp"], limits: SmtpLimits, tls: TlsManager | null): SMTPServerOptions {
  return {
    name: cfg.hostname,
    size: cfg.maxMessageBytes,
    hideENHANCEDSTATUSCODES: false,
    authOptional: true,
    disabledCommands: ["AUTH", "XCLIENT", "XFORWARD", "WIZ", "SHELL", "KILL", ...(tls ? [] : ["STARTTLS"])],
    hideSTARTTLS: !tls,
    // REQUIRETLS (RFC 8689) promises TLS on every later hop; a relay with RELAY_SMTP_SECURE=none
    // or no verification could not keep it. SPEC §4 lists what is offered.
    hideREQUIRETLS: true,
    disableReverseLookup: true,
    // Addresses Postfix accepts (`taro..yamada@docomo.ne.jp`): see lenient-syntax.ts.
    ...ADDRESS_PARSER_OPTIONS,
    maxClients: limits.maxClients,
    maxRecipients: limits.maxRecipients,
    socketTimeout: limits.idleTimeoutMs,
    closeTimeout: limits.shutdownGraceMs,
    maxCommandLength: MAX_COMMAND_LINE_BYTES,
    logger: false,
    ...(tls ? tls.current() : {}),
  };
}
