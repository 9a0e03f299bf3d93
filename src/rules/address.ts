/**
 * Syntax checks for the addresses a rules file names: recipient domains, forward_to
 * mailboxes and webhook URLs. Deliberately stricter than RFC 5321 allows: the routing
 * tricks SPEC §4 refuses at RCPT (`%` hack, bang paths, quoted local parts, IP literals)
 * are refused here too, so a rule can never forward to an address the gateway itself
 * would treat as a relay attempt. Pure functions; invalid input returns null / false.
 */
import { isIPv6 } from "node:net";
import { domainToASCII } from "node:url";

/** RFC 5321 limits: local part 64 octets, domain 253 characters, label 63. */
const MAX_LOCAL_PART_CHARS = 64;
const MAX_DOMAIN_CHARS = 253;

const DOMAIN_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
/**
 * dot-atom text without `%` and `!` (routing tricks); Unicode letters allowed (SMTPUTF8). Not
 * starting with `-`: a Postfix relay refuses such a recipient (`501 5.1.3 Bad recipient address
 * syntax`, it could pass for a command-line option), so every message the rule forwarded got our
 * 250 and then failed at the relay.
 */
const LOCAL_PART = /^(?!-)[\p{L}\p{N}#$&'*+/=?^_`{|}~-]+(?:\.[\p{L}\p{N}#$&'*+/=?^_`{|}~-]+)*$/u;

/**
 * Lower-case ASCII form of a domain name (IDNs converted to punycode), or null when it is
 * not a fully qualified host name (at least two labels, alphabetic TLD, no IP literal).
 */
export function normalizeDomain(input: string): string | null {
  if (input.length === 0 || input.length > MAX_DOMAIN_CHARS || input.endsWith(".")) return null;
  const ascii = /^[\x21-\x7e]+$/.test(input) ? input.toLowerCase() : domainToASCII(input);
  if (ascii === "" || ascii.length > MAX_DOMAIN_CHARS) return null;
  const labels = ascii.split(".");
  if (labels.length < 2) return null;
  if (!labels.every((label) => DOMAIN_LABEL.test(label))) return null;
  const tld = labels[labels.length - 1] ?? "";
  if (/^[0-9]+$/.test(tld)) return null;
  return ascii;
}

/** Normalized mailbox (`local@domain`, domain lower-cased ASCII) or null if refused. */
export function normalizeMailbox(input: string): string | null {
  const at = input.lastIndexOf("@");
  if (at <= 0) return null;
  const local = input.slice(0, at);
  const domain = normalizeDomain(input.slice(at + 1));
  if (domain === null) return null;
  if (local.length > MAX_LOCAL_PART_CHARS || !LOCAL_PART.test(local)) return null;
  return `${local}@${domain}`;
}

/**
 * `address` with what follows its last `@` (all of it when there is none) in ASCII form when it
 * is an IDN, as serve keeps envelope addresses (`info@bücher.example` → `info@xn--bcher-kva.example`):
 * header addresses and the values of address rules are compared in that form, so a rule may name
 * a domain either way. Unchanged when that part is ASCII already or no valid domain name.
 */
export function asciiDomainForm(address: string): string {
  const at = address.lastIndexOf("@");
  const domain = address.slice(at + 1);
  if (/^[\x00-\x7f]*$/.test(domain)) return address;
  const ascii = domainToASCII(domain);
  return ascii === "" ? address : `${address.slice(0, at + 1)}${ascii}`;
}

/**
 * Whether an http(s) URL that does not parse has an IPv6 address without brackets as its host
 * (`http://::1:8080/in`): it is absolute, so "write an absolute URL" alone did not say what to fix.
 */
export function hasBareIpv6Host(input: string): boolean {
  const authority = /^https?:\/\/([^/?#[\]]*)/i.exec(input)?.[1];
  if (authority === undefined) return false;
  const host = authority.slice(authority.lastIndexOf("@") + 1);
  return isIPv6(host) || isIPv6(host.replace(/:\d*$/, ""));
}

/** True for an absolute http(s) URL with a host. */
export function isWebhookUrl(input: string): boolean {
  if (!URL.canParse(input)) return false;
  const url = new URL(input);
  return (url.protocol === "http:" || url.protocol === "https:") && url.hostname !== "";
}
