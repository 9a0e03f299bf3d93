/**
 * What smtp-server 3.21's command parser refuses with a permanent 5xx that Postfix, Exim and
 * Sendmail accept — so the mail bounced here and went through everywhere else:
 *   - a quoted local part with a space (`MAIL FROM:<"john smith"@example.org>`, legal under
 *     RFC 5321 §4.1.2): the parser splits the argument on whitespace before it looks for `<…>`;
 *   - local parts with leading, trailing or doubled dots (`taro..yamada@docomo.ne.jp`,
 *     `taro.@ezweb.ne.jp`: older Japanese mobile-carrier addresses, HPE iLO firmware) and
 *     domains with `_`: the strict check; smtp-server's own `lenientAddressParsing` turns it off
 *     (smtp-options.ts), and recipient-policy.ts stays the one judge of RCPT addresses;
 *   - `HELO host name` (several words, from scanners and NAS boxes): 501, after which every MAIL
 *     got 503 "send HELO/EHLO first", so such a client could never send. The first word is the
 *     name, as Postfix takes it;
 *   - `MAIL  FROM:` / `RCPT\tTO:` (more than one space, or a tab, between the words): 501 or 500;
 *   - `DATA\r\r\n` (a stray CR before the line's CRLF): 500.
 * The routing tricks SPEC §4 refuses stay refused (recipient-policy.ts; a quoted `@` or a double
 * `@` is still 501 from the parser). Pure string work; never throws.
 */
import { isIPv4, isIPv6 } from "node:net";
import { domainToASCII } from "node:url";
import { SMTPConnection } from "smtp-server/lib/smtp-connection.js";
import { withoutRootDot, writtenDomain } from "./recipient-policy.ts";

/**
 * Stands for a space inside a quoted local part while smtp-server splits the argument (a
 * private-use character; a command that already holds one is left as it is, so a client's own
 * never turns into a space). Only the space: a tab is a control character, which RFC 5321's
 * qtextSMTP excludes and smtp-server refuses even in lenient mode; hidden, it reached the
 * Received header, the log and the database.
 */
const HIDDEN_SPACE = "\uE000";

/**
 * `command` with the spaces inside the quoted local part of its `<…>` path hidden, or null
 * when there is nothing to hide (no quotes, or no space inside them).
 */
export function hideQuotedSpaces(command: string): string | null {
  const open = command.indexOf("<");
  const close = open < 0 ? -1 : command.indexOf(">", open);
  if (close < 0 || command.includes(HIDDEN_SPACE)) return null;
  const path = command.slice(open, close);
  if (!path.includes('"') || !path.includes(" ")) return null;
  let out = "";
  let quoted = false;
  for (let i = 0; i < path.length; i++) {
    const ch = path[i] as string;
    if (ch === "\\" && quoted && i + 1 < path.length) {
      out += ch + hide(path[++i] as string);
      continue;
    }
    if (ch === '"') quoted = !quoted;
    out += quoted ? hide(ch) : ch;
  }
  return command.slice(0, open) + out + command.slice(close);
}

function hide(ch: string): string {
  return ch === " " ? HIDDEN_SPACE : ch;
}

/** The address with the spaces hideQuotedSpaces hid put back. */
export function restoreQuotedSpaces(address: string): string {
  return address.replaceAll(HIDDEN_SPACE, " ");
}

/**
 * Longest address taken (local part, `@`, domain): RFC 5321 §4.5.3.1.3's 256-octet path less
 * its `<` and `>` (RFC 3696 erratum 1690). Stops a 10 KB "address" from reaching the logs, the
 * database and the relay. Not 253 (smtp-server's strict limit, one short): a 254-octet sender
 * or recipient (a long VERP/SRS bounce address) is valid, Postfix takes it, and it got 501 here.
 */
export const MAX_ADDRESS_CHARS = 254;

/** A host name's characters (smtp-server's strict set, IDNs' included) plus '_', which Postfix takes. */
const DOMAIN_CHARS = /^[A-Za-z0-9_\u0080-\uFFFF.-]+$/;

/**
 * Whether the domain of `address` passes smtp-server's strict domain check, '_' allowed. Lenient
 * mode checks no domain at all, and the recipient policy's IDNA step (WHATWG host parsing) cuts a
 * host at '/', '?', '#' or a backslash and decodes '%2e': `v@company.com/evil.example` and
 * `v@company%2ecom` got 250 as v@company.com, and `MAIL FROM:<ceo@company.com/x>` was recorded
 * and relayed as ceo@company.com. An address without '@' (`<>`, `<postmaster>`) is left to the parser.
 */
function acceptableDomain(address: string): boolean {
  const at = address.lastIndexOf("@");
  if (at < 0) return true;
  const domain = withoutRootDot(address.slice(at + 1));
  if (domain.startsWith("[") && domain.endsWith("]")) {
    const ip = domain.slice(1, -1);
    return /^ipv6:/i.test(ip) ? isIPv6(ip.slice(5)) : isIPv4(ip);
  }
  return DOMAIN_CHARS.test(domain) && !domain.startsWith(".") && !domain.endsWith(".") && !/\.\.|\.-|-\./.test(domain) && hostNameLabels(domain);
}

/**
 * RFC 1035/1123 host-name rules that Postfix's valid_hostname() applies to a MAIL or RCPT domain
 * (501 there): labels of at most 63 octets as A-labels, none starting or ending with '-' (the
 * check above saw only the '-' next to a dot, so `a@-s.example` and `a@s.example-` got 250), and
 * not all digits (`a@192.0.2.1`: an address literal needs brackets). Accepted here, such a sender
 * was relayed on forward and refused by the relay (a Postfix smarthost) after our 250.
 */
function hostNameLabels(domain: string): boolean {
  const ascii = domainToASCII(domain) || domain;
  return /[^0-9.]/.test(ascii) && ascii.split(".").every((label) => label.length <= 63 && !label.startsWith("-") && !label.endsWith("-"));
}

/**
 * Characters that end or open an address in RFC 5322 (list separators, a domain literal's
 * opening bracket, a quote) and are not atext: outside a quoted local part Postfix refuses them
 * with 501 (`a,b@x`, `a;b@x`, `a[b@x`, `a"b@x`), and smtp-server's lenient mode took them.
 * Accepted, such a sender was relayed as is on forward and refused by the relay (a Postfix
 * smarthost) after our 250. `(` and `\` too: Postfix reads an RFC 822 comment and a quoted
 * pair there, so it refuses some (`a(b)c@x`: 501) and relays the others as another address
 * (`a(b@x` as `a@` its own domain, `(b)a@x` as `a@x`, `a\b@x` as `ab@x`); neither is RFC
 * 5321 atext. `]`, `)`, `:` stay taken: Postfix quotes them and keeps the address.
 */
const LOCAL_PART_SPECIALS = /[",;[(\\]/;

/**
 * Whether the local part of `address` is a dot-string (leniently: any dots) without the
 * characters above, or one whole quoted string (RFC 5321 §4.1.2 Local-part: a quote may not
 * open or close in the middle, as in `a"b"c@x` or `"a"b@x`). Neither may start with `-`
 * (`-a@x`, `"-a"@x`, `"\-a"@x`): Postfix refuses such an address with 501 at MAIL and RCPT (it
 * could pass for a command-line option), so a sender like that got our 250 and the relay's 501.
 */
function acceptableLocalPart(address: string): boolean {
  const at = address.lastIndexOf("@");
  const local = at < 0 ? address : address.slice(0, at);
  if (!local.startsWith('"')) return !LOCAL_PART_SPECIALS.test(local) && !local.startsWith("-");
  if (local[1] === "-" || (local[1] === "\\" && local[2] === "-")) return false;
  for (let i = 1; i < local.length; i++) {
    if (local[i] === "\\") i++;
    else if (local[i] === '"') return i === local.length - 1;
  }
  return false;
}

/**
 * The address's length with its domain as A-labels, as the client sent it and as it is stored
 * and relayed: smtp-server hands the domain over decoded (`xn--ls8h` → one emoji, two code
 * units), so measured as handed over, a 549-character sender of 60 such labels passed the limit.
 */
function asciiLength(address: string): number {
  const at = address.lastIndexOf("@");
  if (at < 0) return address.length;
  const domain = address.slice(at + 1);
  return at + 1 + (domainToASCII(domain) || domain).length;
}

/**
 * smtp-server's address parser in lenient mode, with quoted spaces kept whole and the path
 * length and the domain still checked as its strict mode does: `parse` is its
 * `_parseAddressCommand` (bound). Its result (the address restored), or false (501).
 */
export function parseWithQuotedSpaces<T extends { address: string }>(parse: (name: string, command: string) => T | false, name: string, command: string): T | false {
  const hidden = hideQuotedSpaces(command);
  const parsed = parse(name, hidden ?? command);
  if (parsed === false) return false;
  const address = hidden === null ? parsed.address : restoreQuotedSpaces(parsed.address);
  if (!acceptableDomain(address) || !acceptableLocalPart(address) || asciiLength(address) > MAX_ADDRESS_CHARS) return false;
  // The labels as the client wrote them too: smtp-server decodes an A-label IDNA refuses
  // (`xn--company-`) to `company`, which passes, and the sender is kept and relayed as written.
  const written = writtenDomain(command);
  if (written !== null && !written.startsWith("[") && !hostNameLabels(withoutRootDot(written))) return false;
  return hidden === null ? parsed : { ...parsed, address };
}

/** The name serve takes from a HELO/EHLO argument (heloWithOneName): the first word of several. For the dry run's --helo. */
export function heloName(argument: string): string {
  return argument.trim().split(/\s+/)[0] ?? "";
}

/** `HELO host name` → `HELO host`: the first word of several is the name; any other command as it is. */
export function heloWithOneName(command: Buffer): Buffer {
  const parts = command.toString("latin1").trim().split(/\s+/);
  return parts.length > 2 ? Buffer.from(`${parts[0]} ${parts[1]}`, "latin1") : command;
}

/** `MAIL  FROM:`, `RCPT\tTO :` and the like: the verb, the keyword and the whitespace around them. */
const SPACED_ADDRESS_VERB = /^(MAIL|RCPT)[ \t]+(FROM|TO)[ \t]*:/i;
/** Any other verb followed by a tab or by more than one space. */
const SPACED_VERB = /^([A-Za-z]+)(?:\t[ \t]*| [ \t]+)/;
/** The longest head either pattern can need: past it, the whitespace of a flood is left alone. */
const VERB_HEAD_BYTES = 64;

/**
 * The command with the whitespace between its words as one space: `MAIL  FROM:<a@b>` (two
 * spaces), `RCPT\tTO:<b@c>`, `HELO\tname`. smtp-server splits the verb on one space and
 * compares `MAIL FROM`/`RCPT TO` exactly, so such a sender or recipient got 501 (a tab: 500,
 * command not recognized) and the mail bounced; Postfix (smtpd_strict_rfc821_envelopes=no, its
 * default) reads the words whatever whitespace separates them and answers 250. Only the head
 * changes: the path and parameters keep their bytes (quoted spaces included). Any other
 * command is returned as it is.
 */
export function oneSpaceBetweenWords(command: Buffer): Buffer {
  const head = command.toString("latin1", 0, Math.min(command.length, VERB_HEAD_BYTES));
  const address = SPACED_ADDRESS_VERB.exec(head);
  if (address) {
    const [matched, verb, keyword] = address as unknown as [string, string, string];
    const normal = `${verb} ${keyword}:`;
    return matched === normal ? command : Buffer.concat([Buffer.from(normal, "latin1"), command.subarray(matched.length)]);
  }
  const spaced = SPACED_VERB.exec(head);
  if (!spaced) return command;
  return Buffer.concat([Buffer.from(`${spaced[1]} `, "latin1"), command.subarray(spaced[0].length)]);
}

/**
 * The command without the carriage returns at its end: a line ending `\r\r\n` (a client that
 * writes CRLF through a text-mode stream). smtp-server takes one CR off with the LF, and the
 * other stayed in the verb: `DATA\r`, `QUIT\r`, `RSET\r` got 500 "command not recognized",
 * so such a client's mail bounced at DATA after MAIL and RCPT had been taken; Postfix reads the
 * CR as whitespace and answers 354. A CR inside the line is left to the parser.
 */
export function withoutTrailingCr(command: Buffer): Buffer {
  let end = command.length;
  while (end > 0 && command[end - 1] === 0x0d) end--;
  return end === command.length ? command : command.subarray(0, end);
}

/** The options smtp-server's address parser reads (smtp-options.ts sets them on the server). */
export const ADDRESS_PARSER_OPTIONS = { lenientAddressParsing: true } as const;

/**
 * What serve's parser makes of `MAIL FROM:<address>` / `RCPT TO:<address>`: the address it
 * would hand our hooks (A-labels decoded), or false where serve answers 501 before any hook runs
 * (`a@b@c`, `"v@x"@y`, no `@`). For the dry run (`mailgw test --from/--to`), so it refuses
 * exactly what serve refuses; the parser uses only its options and logger from the connection.
 */
export function parseEnvelopeAddress(verb: "MAIL FROM" | "RCPT TO", address: string): string | false {
  const connection = { _server: { options: ADDRESS_PARSER_OPTIONS, logger: { error() {} } }, session: {}, id: "dry-run" };
  const parse = (name: string, command: string) => SMTPConnection.prototype._parseAddressCommand.call(connection as unknown as SMTPConnection, name, command);
  const parsed = parseWithQuotedSpaces(parse, verb, `${verb}:<${address}>`);
  return parsed === false ? false : parsed.address;
}
