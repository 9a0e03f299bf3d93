/**
 * Client-address helpers for the SMTP access policy: normalizing what sockets report
 * (`::ffff:192.0.2.1` → `192.0.2.1`, IPv6 lower-case) and matching against CIDR lists.
 * The CIDR lists come from Config (already validated there); they are parsed once with
 * cidr-tools into integer bounds, and each connection costs a few bigint comparisons.
 * An address that does not parse matches nothing (refused, never allowed by accident).
 */
import { isIP } from "node:net";
import { normalizeCidr, parseCidr } from "cidr-tools";

interface Range {
  version: 4 | 6;
  start: bigint;
  end: bigint;
}

const MAPPED_PREFIX = 0xffffn;
/** RFC 6052's well-known NAT64 prefix 64:ff9b::/96, as the address's top 96 bits. */
const NAT64_PREFIX = 0x64ff9bn << 64n;

/** The low 32 bits of an address as dotted IPv4. */
function ipv4Text(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join(".");
}

/**
 * The address as the rest of mailgw sees it: IPv4-mapped IPv6 (`::ffff:192.0.2.1`, also in
 * hex form) unwrapped to IPv4, IPv6 compressed and lower-case. Non-addresses come back as
 * given (trimmed), so they match no CIDR.
 */
export function normalizeIp(address: string | undefined): string {
  const raw = (address ?? "").trim().replace(/^\[|\]$/g, "");
  if (isIP(raw) !== 6) return raw;
  const value = parseCidr(raw).start;
  if (value >> 32n === MAPPED_PREFIX) return ipv4Text(value);
  return normalizeCidr(raw, { compress: true }).toLowerCase();
}

/** Returns a predicate telling whether an address lies in any of the CIDRs. */
export function createIpMatcher(cidrs: readonly string[]): (address: string) => boolean {
  const ranges: Range[] = cidrs.map((c) => {
    const p = parseCidr(c);
    return { version: p.version, start: p.start, end: p.end };
  });
  return (address: string) => {
    const forms = addressForms(address);
    return forms.some((f) => ranges.some((r) => r.version === f.version && r.start <= f.value && f.value <= r.end));
  };
}

/** An IPv4 client is tested against IPv4 ranges and, in mapped form, against IPv6 ranges. */
function addressForms(address: string): { version: 4 | 6; value: bigint }[] {
  const ip = normalizeIp(address);
  const family = isIP(ip);
  if (family === 0) return [];
  const value = parseCidr(ip).start;
  if (family === 6) return [{ version: 6, value }];
  return [
    { version: 4, value },
    { version: 6, value: (0xffffn << 32n) | value },
  ];
}

/**
 * Key for per-client accounting (rate limits): the IPv4 address, or the /64 of an IPv6
 * address — one host usually owns a whole /64, so counting single IPv6 addresses would let
 * it rotate through 2^64 of them. An address in the well-known NAT64 prefix (64:ff9b::/96, RFC
 * 6052) is an IPv4 sender seen through a translator: it counts as that IPv4 address, or every
 * IPv4 sender behind the translator would share one /64's limit.
 */
export function clientKey(address: string): string {
  const ip = normalizeIp(address);
  if (isIP(ip) !== 6) return ip;
  const value = parseCidr(ip).start;
  if (value >> 32n === NAT64_PREFIX) return ipv4Text(value);
  return `${(value >> 64n).toString(16)}::/64`;
}
