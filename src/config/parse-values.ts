/**
 * Parsers for configuration values that are more than a scalar: `.env` files and CIDR
 * lists. Both throw a CliError naming the variable (or file:line) on bad input.
 */
import { normalizeCidr, parseCidr } from "cidr-tools";
import { isIP } from "node:net";
import { CliError } from "../errors.ts";

/**
 * An env file's bytes as text. A file saved as Windows-1252 or Latin-1 ("Passwört" from a
 * Windows editor) was decoded with U+FFFD in place of the byte, and the relay then got a
 * password that was never typed; systemd ignores such a line. Refused, naming the line. Only
 * a line that sets something counts: a comment or blank line in Latin-1 ("# Konfiguration für
 * mailgw") is read by systemd and was read by mailgw, and refusing it stopped a working service.
 */
export function decodeEnvFile(bytes: Uint8Array, file: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    const lines = new TextDecoder("utf-8").decode(bytes).split("\n");
    const bad = lines.findIndex((line) => line.includes("\ufffd") && !isCommentOrBlank(line));
    if (bad !== -1) throw new CliError(`${file}:${bad + 1}: not UTF-8 text (saved as Windows-1252 or Latin-1?): save the file as UTF-8`);
    return lines.join("\n");
  }
}

function isCommentOrBlank(line: string): boolean {
  const trimmed = line.trim();
  return trimmed === "" || trimmed.startsWith("#");
}

/**
 * KEY=VALUE lines; `#` comments; optional `export `; single or double quotes. A `#` starts a
 * note at the start of a line or after a space outside quotes, so `KEY=   # note` is empty
 * (it was the value "# note": a WEBHOOK_SECRET or relay login nobody wrote). A quote that is
 * not closed on its line, or text after a closing quote, is refused: systemd reads the first
 * as a value running on over the following lines, the second as one glued value.
 */
export function parseDotenv(text: string, file: string): Map<string, string> {
  const out = new Map<string, string>();
  const lines = text.split(/\r?\n/);
  lines.forEach((line, i) => {
    const trimmed = line.trim();
    if (!trimmed || trimmed.startsWith("#")) return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$/.exec(trimmed);
    if (!m) throw new CliError(`${file}:${i + 1}: not a KEY=VALUE line`);
    out.set(m[1] ?? "", dotenvValue(m[2] ?? "", `${file}:${i + 1}: ${m[1]}`));
  });
  return out;
}

/** The value after `=`; `where` (file:line: KEY) starts an error. */
function dotenvValue(afterEquals: string, where: string): string {
  const value = afterEquals.replace(/^\s+#.*$/, "").trim();
  const quote = value[0];
  if (quote !== '"' && quote !== "'") return value.replace(/\s+#.*$/, "");
  // `KEY="value" # note`: the note goes as after an unquoted value (it kept the quotes, so a
  // quoted STATS_TOKEN with a note was refused with 401 and a quoted password failed the login).
  const quoted = /^(["'])(.*?)\1\s+#.*$/.exec(value) ?? /^(["'])(.*)\1$/.exec(value);
  if (quoted) return quoted[2] ?? "";
  const other = quote === '"' ? "'" : '"';
  if (value.indexOf(quote, 1) === -1) {
    throw new CliError(`${where}: the value opens a ${quote} quote that is not closed on this line (a value is one line); close it, or put a value that starts with ${quote} in ${other} quotes`);
  }
  throw new CliError(`${where}: text after the closing ${quote} quote; put the whole value in the quotes, or a note after a space and #`);
}

/**
 * One warning per CIDR with host bits set (`10.0.0.1/8` means all of 10.0.0.0/8): usually a
 * slip for a single address (/32) that widens an allow-list or the trusted proxies without a
 * word; Postfix warns about "non-null host address bits" in the same place.
 */
export function hostBitWarnings(cidrs: readonly string[], name: string): string[] {
  return cidrs.flatMap((cidr) => {
    const [addr = "", prefix = ""] = cidr.split("/");
    const max = isIP(addr) === 4 ? 32 : 128;
    if (Number(prefix) === max || parseCidr(cidr).start === parseCidr(`${addr}/${max}`).start) return [];
    const network = readableNetwork(cidr);
    return [`${name}: ${cidr} has host bits set and means the whole network ${network}; write ${network} if that is meant, or ${addr}/${max} for the one address`];
  });
}

/**
 * The network of a CIDR, an IPv4-mapped one written as it was (`::ffff:10.0.0.0/104`): the
 * canonical IPv6 form (`::ffff:a00:0/104`) is correct but not what an admin would recognise.
 */
function readableNetwork(cidr: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)\/(\d+)$/i.exec(cidr);
  const prefix = Number(mapped?.[2]);
  if (!mapped || prefix < 96) return normalizeCidr(cidr);
  return `::ffff:${normalizeCidr(`${mapped[1]}/${prefix - 96}`).split("/")[0]}/${prefix}`;
}

/** Comma-separated CIDRs or single addresses, validated; single addresses get /32 or /128. */
export function parseCidrList(value: string, name: string): string[] {
  const items = value.split(",").map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new CliError(`${name} is empty: expected comma-separated CIDRs such as 10.0.0.0/8,::1/128`);
  return items.map((item) => {
    // A zone id (fe80::1%eth0) reads as "only on that interface", which the check cannot do:
    // the client address is all it compares, so the zone was dropped and any interface matched.
    if (item.includes("%")) {
      const bare = item.replace(/%[^/]*/, "");
      throw new CliError(`${name}: "${item}" names an interface (zone id): client addresses are matched without their interface; write ${bare}`);
    }
    const [addr = "", prefix, extra] = item.split("/");
    const family = isIP(addr);
    const max = family === 4 ? 32 : 128;
    const validPrefix = prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= max);
    if (family === 0 || !validPrefix || extra !== undefined) {
      throw new CliError(`${name}: "${item}" is not an IP address or CIDR (e.g. 192.0.2.0/24, 2001:db8::/32)`);
    }
    return prefix === undefined ? `${addr}/${max}` : item;
  });
}
