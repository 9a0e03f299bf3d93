/**
 * The envelope a forward is relayed with, made fit for a relay that may not offer SMTPUTF8
 * (RFC 6531). An address whose only non-ASCII part is its domain goes out with the domain's
 * A-label (IDNA, `info@bücher.example` → `info@xn--bcher-kva.example`): every relay takes
 * that, and it names the same mailbox. An address with a non-ASCII local part has no ASCII
 * form: it needs a relay that offers SMTPUTF8, and `smtpUtf8Address` names it so the relay
 * pool can refuse the message before MAIL FROM instead of sending a UTF-8 envelope without
 * the SMTPUTF8 parameter (a strict relay refuses that, a lenient one may mangle it). This is
 * what Postfix does: A-labels for domains, a 5.6.7 bounce when a local part needs SMTPUTF8.
 *
 * Trusts: addresses as intake and rules.yaml validated them (one `@` for a mailbox, or "" for
 * the null sender). Failure: never throws; a domain IDNA cannot convert is kept as it is and
 * counts as needing SMTPUTF8.
 */
import { domainToASCII } from "node:url";

export interface RelayEnvelope {
  from: string;
  to: string[];
  /** The first address that cannot be sent without SMTPUTF8, or null. */
  smtpUtf8Address: string | null;
}

const NON_ASCII = /[^\x00-\x7f]/;

export function relayEnvelope(mailFrom: string, to: readonly string[]): RelayEnvelope {
  let smtpUtf8Address: string | null = null;
  const convert = (address: string): string => {
    const ascii = asciiAddress(address);
    if (ascii === null) {
      smtpUtf8Address ??= address;
      return address;
    }
    return ascii;
  };
  const from = convert(mailFrom);
  return { from, to: to.map(convert), smtpUtf8Address };
}

/** The address in ASCII (domain as A-label), or null when only SMTPUTF8 can carry it. */
export function asciiAddress(address: string): string | null {
  if (!NON_ASCII.test(address)) return address;
  const at = address.lastIndexOf("@");
  if (at <= 0) return null;
  const local = address.slice(0, at);
  if (NON_ASCII.test(local)) return null;
  const domain = domainToASCII(address.slice(at + 1));
  if (domain === "" || NON_ASCII.test(domain)) return null;
  return `${local}@${domain}`;
}

/**
 * mailgw's own Received: field, the stored message's first, with RFC 6531's `with UTF8SMTP` or
 * `UTF8SMTPS` (smtp/received-header.ts): the client declared SMTPUTF8 on MAIL FROM. The stored
 * message is the only record of it, and the client cannot forge it (our field comes first, its
 * HELO name is reduced to a safe character set).
 */
const DECLARED_UTF8 = /^Received: from [^\r\n]*\r\n\tby [^\r\n]* \(mailgw\) with UTF8SMTPS?\r\n/;
/** Bytes of the stored message that hold that field's first two lines (a HELO name is at most 255). */
const RECEIVED_HEAD_BYTES = 1024;

/**
 * Whether the client that sent `raw` (as stored, CRLF line ends) declared SMTPUTF8. Postfix
 * keeps that request when it relays (SMTPUTF8 on MAIL FROM to a relay that offers it), so the
 * hops after it know the UTF-8 header fields are meant; without the declaration they get none.
 */
export function declaredSmtpUtf8(raw: Uint8Array): boolean {
  const head = Buffer.from(raw.buffer, raw.byteOffset, Math.min(raw.byteLength, RECEIVED_HEAD_BYTES));
  return DECLARED_UTF8.test(head.toString("latin1"));
}
