/**
 * CIDR handling for `in_cidr` conditions. Ranges are parsed once at compile time (via
 * cidr-tools) into integer bounds; a message's client address is parsed once per message
 * and compared with plain bigint comparisons. IPv4-mapped IPv6 client addresses
 * (`::ffff:192.0.2.1`) match IPv4 ranges, and IPv4 clients match `::ffff:0:0/96`-style
 * IPv6 ranges. Stricter than cidr-tools alone: prefixes beyond the address width, short
 * IPv4 forms (`10.1`) and malformed IPv6 (`2001:db8:acme::`, which cidr-tools reads as some
 * other network) are refused. Invalid input yields null, never a throw.
 */
import { isIP, isIPv6 } from "node:net";
import { normalizeCidr, parseCidr } from "cidr-tools";
import type { ParsedClientIp } from "./types.ts";

export interface CidrRange {
  version: 4 | 6;
  start: bigint;
  end: bigint;
  /** True when the written address had bits set below the prefix (10.0.0.1/8). */
  hostBitsSet: boolean;
  /** Canonical text, e.g. `10.0.0.0/8`. */
  text: string;
}

const IPV4_DOTTED = /^\d{1,3}(?:\.\d{1,3}){3}$/;

/** Four dotted decimal octets, each 0-255 (cidr-tools alone accepts `10.1` and `300.1.1.1`). */
function isDottedQuad(text: string): boolean {
  return IPV4_DOTTED.test(text) && text.split(".").every((octet) => Number(octet) <= 255);
}
const MAPPED_PREFIX = 0xffffn << 32n;
const LOW_32_BITS = 0xffffffffn;

export function parseCidrRange(input: string): CidrRange | null {
  const trimmed = input.trim();
  const slash = trimmed.indexOf("/");
  const address = slash === -1 ? trimmed : trimmed.slice(0, slash);
  const prefixText = slash === -1 ? null : trimmed.slice(slash + 1);
  if (address.includes("%")) return null;
  const isV4 = !address.includes(":");
  if (isV4 ? !isDottedQuad(address) : !isIPv6(address)) return null;
  if (prefixText !== null) {
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > (isV4 ? 32 : 128)) return null;
  }
  try {
    const parsed = parseCidr(trimmed);
    const exact = parseCidr(address);
    return {
      version: parsed.version,
      start: parsed.start,
      end: parsed.end,
      hostBitsSet: exact.start !== parsed.start,
      text: normalizeCidr(trimmed),
    };
  } catch {
    return null;
  }
}

/** Numeric forms of a client address, or null when it is not an IP address. */
export function parseClientIp(input: string): ParsedClientIp | null {
  if (input === "" || input.includes("/")) return null;
  try {
    const parsed = parseCidr(input);
    if (parsed.version === 4) {
      if (!isDottedQuad(input)) return null;
      return { v4: parsed.start, v6: MAPPED_PREFIX | parsed.start };
    }
    const mapped = parsed.start >> 32n === 0xffffn;
    return { v4: mapped ? parsed.start & LOW_32_BITS : null, v6: parsed.start };
  } catch {
    return null;
  }
}

/**
 * The address as serve gives `client_ip` (smtp/ip.ts normalizeIp): an IPv4-mapped address as
 * its IPv4 one, IPv6 compressed and lower-case. null when the input is not an address.
 */
export function clientIpForm(input: string): string | null {
  const address = input.replace(/^\[(.*)\]$/, "$1");
  const ip = isIP(address) === 0 || address.includes("%") ? null : parseClientIp(address);
  if (ip === null) return null;
  if (ip.v4 !== null) return [24n, 16n, 8n, 0n].map((shift) => String(((ip.v4 ?? 0n) >> shift) & 0xffn)).join(".");
  return normalizeCidr(address, { compress: true }).toLowerCase();
}

export function ipInRanges(ip: ParsedClientIp, ranges: readonly CidrRange[]): boolean {
  for (const range of ranges) {
    const value = range.version === 4 ? ip.v4 : ip.v6;
    if (value !== null && value >= range.start && value <= range.end) return true;
  }
  return false;
}

/**
 * True when the ranges together cover every IPv4 and IPv6 address. `::/0` alone does: an IPv4
 * client is matched against IPv6 ranges in its mapped form (::ffff:192.0.2.1), so it is inside.
 */
export function coversEverything(ranges: readonly CidrRange[]): boolean {
  return ranges.some((r) => r.version === 6 && r.start === 0n && r.end === (1n << 128n) - 1n);
}
