/**
 * `host:port` for logs, /stats and `queue list`, with an IPv6 address in brackets as in a URL
 * (RFC 3986 §3.2.2): `[2001:db8::25]:25`. Written bare, `2001:db8::25:25` is itself a valid
 * IPv6 address, and the port could not be told from the address.
 */
export function hostPort(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}
