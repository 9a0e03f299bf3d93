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
 *     name, as Postfix takes it.
 * The routing tricks SPEC §4 refuses stay refused (recipient-policy.ts; a quoted `@` or a double
 * `@` is still 501 from the parser). Pure string work; never throws.
 */
import { SMTPConnection } from "smtp-server/lib/smtp-connection.js";

/** Stands for a space or tab inside a quoted local part while smtp-server splits the argument (a private-use character: never in an address otherwise). */
const HIDDEN_SPACE = "\uE000";
const HIDDEN_TAB = "\uE001";

/**
 * `command` with the whitespace inside the quoted local part of its `<…>` path hidden, or null
 * when there is nothing to hide (no quotes, or no whitespace inside them).
 */
export function hideQuotedSpaces(command: string): string | null {
  const open = command.indexOf("<");
  const close = open < 0 ? -1 : command.indexOf(">", open);
  if (close < 0) return null;
  const path = command.slice(open, close);
  if (!path.includes('"') || !/[ \t]/.test(path)) return null;
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
  return ch === " " ? HIDDEN_SPACE : ch === "\t" ? HIDDEN_TAB : ch;
}

/** The address with the whitespace hideQuotedSpaces hid put back. */
export function restoreQuotedSpaces(address: string): string {
  return address.replaceAll(HIDDEN_SPACE, " ").replaceAll(HIDDEN_TAB, "\t");
}

/**
 * Longest address taken (local part, `@`, domain): RFC 5321 §4.5.3.1.3's 256-octet path less
 * `<`, `>` and one spare, smtp-server's strict limit, kept without its other strict checks.
 * Stops a 10 KB "address" from reaching the logs, the database and the relay.
 */
export const MAX_ADDRESS_CHARS = 253;

/**
 * smtp-server's address parser in lenient mode, with quoted whitespace kept whole and the path
 * length still checked: `parse` is its `_parseAddressCommand` (bound). Its result (the address
 * restored), or false (501).
 */
export function parseWithQuotedSpaces<T extends { address: string }>(parse: (name: string, command: string) => T | false, name: string, command: string): T | false {
  const hidden = hideQuotedSpaces(command);
  const parsed = parse(name, hidden ?? command);
  if (parsed === false || parsed.address.length > MAX_ADDRESS_CHARS) return false;
  return hidden === null ? parsed : { ...parsed, address: restoreQuotedSpaces(parsed.address) };
}

/** `HELO host name` → `HELO host`: the first word of several is the name; any other command as it is. */
export function heloWithOneName(command: Buffer): Buffer {
  const parts = command.toString("latin1").trim().split(/\s+/);
  return parts.length > 2 ? Buffer.from(`${parts[0]} ${parts[1]}`, "latin1") : command;
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
