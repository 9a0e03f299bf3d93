/**
 * ESMTP parameters on MAIL FROM and RCPT TO: only those of the extensions this server offers
 * (SPEC §4). Anything else is answered 555 5.5.4, as RFC 5321 §4.1.1.11 and Postfix do.
 */
import { isAscii, isUtf8 } from "node:buffer";

/** MAIL FROM parameters of the extensions offered (SIZE, 8BITMIME, SMTPUTF8). */
export const MAIL_PARAMETERS: ReadonlySet<string> = new Set(["SIZE", "BODY", "SMTPUTF8"]);
/** RCPT TO takes none: DSN (NOTIFY, ORCPT) is not offered. */
export const RCPT_PARAMETERS: ReadonlySet<string> = new Set<string>();

/**
 * The first parameter of MAIL/RCPT that no offered extension defines, as the client wrote it
 * (`FOO=bar`), or null. smtp-server accepts any; RFC 5321 §4.1.1.11 and Postfix answer 555, so
 * a client cannot rely on an option (a DSN request, REQUIRETLS) that is silently not honoured.
 */
export function unsupportedParameter(args: unknown, allowed: ReadonlySet<string>, command?: Uint8Array): string | null {
  const nameless = command === undefined ? undefined : namelessParameter(command);
  if (nameless !== undefined) return shown(nameless);
  if (typeof args !== "object" || args === null) return null;
  for (const [name, value] of Object.entries(args as Record<string, unknown>)) {
    if (allowed.has(name.toUpperCase())) continue;
    return shown(typeof value === "string" ? `${name}=${value}` : name);
  }
  return null;
}

/**
 * A parameter with no name (`MAIL FROM:<a@b> =x`): smtp-server's parser skips it before args
 * reach the hooks, so it read as accepted; Postfix answers 555 for it as for any unknown option.
 * Split as that parser splits (the address is the first word after the colon), so an `=` inside
 * the address (an SRS sender) is never taken for one.
 */
function namelessParameter(command: Uint8Array): string | undefined {
  const line = Buffer.from(command.buffer, command.byteOffset, command.byteLength).toString("latin1");
  const words = line.split(":").slice(1).join(":").trim().split(/\s+/).slice(1);
  return words.find((word) => word.startsWith("="));
}

/** A parameter as the reply quotes it: bounded, printable ASCII only. */
function shown(parameter: string): string {
  return parameter.slice(0, 100).replace(/[^\x21-\x7e]/g, "?");
}

/**
 * RFC 6531 §3.4: non-ASCII (UTF-8) in MAIL or RCPT is allowed only in a transaction whose MAIL
 * FROM carried SMTPUTF8. Postfix answers `553 5.6.7 Must declare SMTPUTF8 to send unicode
 * address`; accepting it silently would hand the relay an envelope it may refuse after our 250.
 * Bytes that are not UTF-8 at all get Postfix's `500 5.5.2 Error: bad UTF-8 syntax`: decoded,
 * they would become U+FFFD and different addresses one string.
 * Judged on the command's bytes as the client sent them: smtp-server decodes an A-label domain
 * (`xn--mnchen-3ya.de`) to Unicode before our hooks see the address, and that ASCII address
 * needs no SMTPUTF8 (measured: it was refused 553 before).
 */
export function utf8Refusal(command: Uint8Array | undefined, declared: boolean): { code: 500 | 553; text: string } | null {
  if (command === undefined || isAscii(command)) return null;
  if (!isUtf8(command)) return { code: 500, text: "5.5.2 Error: bad UTF-8 syntax" };
  return declared ? null : { code: 553, text: "5.6.7 Must declare SMTPUTF8 to send unicode address" };
}
