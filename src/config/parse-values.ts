/**
 * Parsers for configuration values that are more than a scalar: `.env` files and CIDR
 * lists. Both throw a CliError naming the variable (or file:line) on bad input.
 */
import { normalizeCidr, parseCidr } from "cidr-tools";
import { isIP } from "node:net";
import { CliError } from "../errors.ts";

/** KEY=VALUE lines; `#` comments; optional `export `; single or double quotes. */
export function parseDotenv(text: string, file: string): Map<string, string> {
  const out = new Map<string, string>();
  const lines = text.split(/\r?\n/);
  lines.forEach((line, i) => {
    const trimmed = line.trim();
    if (!trimmed || trimmed.startsWith("#")) return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(trimmed);
    if (!m) throw new CliError(`${file}:${i + 1}: not a KEY=VALUE line`);
    let value = m[2] ?? "";
    // `KEY="value" # note`: the note goes as after an unquoted value (it kept the quotes, so a
    // quoted STATS_TOKEN with a note was refused with 401 and a quoted password failed the login).
    const quoted = /^(["'])(.*?)\1\s+#.*$/.exec(value) ?? /^(["'])(.*)\1$/.exec(value);
    if (quoted) value = quoted[2] ?? "";
    else value = value.replace(/\s+#.*$/, "");
    out.set(m[1] ?? "", value);
  });
  return out;
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
