/**
 * ESMTP parameters on MAIL FROM and RCPT TO: only those of the extensions this server offers
 * (SPEC §4). Anything else is answered 555 5.5.4, as RFC 5321 §4.1.1.11 and Postfix do.
 */
/** MAIL FROM parameters of the extensions offered (SIZE, 8BITMIME, SMTPUTF8). */
export const MAIL_PARAMETERS: ReadonlySet<string> = new Set(["SIZE", "BODY", "SMTPUTF8"]);
/** RCPT TO takes none: DSN (NOTIFY, ORCPT) is not offered. */
export const RCPT_PARAMETERS: ReadonlySet<string> = new Set<string>();

/**
 * The first parameter of MAIL/RCPT that no offered extension defines, as the client wrote it
 * (`FOO=bar`), or null. smtp-server accepts any; RFC 5321 §4.1.1.11 and Postfix answer 555, so
 * a client cannot rely on an option (a DSN request, REQUIRETLS) that is silently not honoured.
 */
export function unsupportedParameter(args: unknown, allowed: ReadonlySet<string>): string | null {
  if (typeof args !== "object" || args === null) return null;
  for (const [name, value] of Object.entries(args as Record<string, unknown>)) {
    if (allowed.has(name.toUpperCase())) continue;
    const shown = typeof value === "string" ? `${name}=${value}` : name;
    return shown.slice(0, 100).replace(/[^\x21-\x7e]/g, "?");
  }
  return null;
}

/**
 * RFC 6531 §3.4: a non-ASCII (UTF-8) address is allowed only in a transaction whose MAIL FROM
 * carried SMTPUTF8. Postfix answers `553 5.6.7 Must declare SMTPUTF8 to send unicode address`;
 * accepting it silently would hand the relay an envelope it may refuse after our 250.
 */
export function needsSmtpUtf8(address: string, declared: boolean): boolean {
  return !declared && /[^\x00-\x7f]/.test(address);
}
