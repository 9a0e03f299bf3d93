import { isIP } from "node:net";

/**
 * `host:port` for logs, /stats and `queue list`, with an IPv6 address in brackets as in a URL
 * (RFC 3986 §3.2.2): `[2001:db8::25]:25`. Written bare, `2001:db8::25:25` is itself a valid
 * IPv6 address, and the port could not be told from the address.
 */
export function hostPort(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/**
 * Whether `host` (a name or an address, IPv6 with or without brackets, in any of its written
 * forms) is this machine's loopback: `localhost`, 127.0.0.0/8, `::1`, or 127.x mapped into IPv6.
 * The forms are canonicalised first: compared as strings, `0:0:0:0:0:0:0:1` and
 * `::ffff:7f00:1` counted as public, so HTTP_HOST written that way got the "open to the network"
 * warning and no DNS-rebinding guard.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[|\]$/g, "");
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (isIP(h) !== 6) return false;
  // The WHATWG URL parser writes an IPv6 address in its canonical (RFC 5952) form.
  const canonical = new URL(`http://[${h}]/`).hostname.replace(/^\[|\]$/g, "");
  return canonical === "::1" || /^::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}$/.test(canonical);
}
