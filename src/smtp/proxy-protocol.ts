/**
 * PROXY protocol v1 (text) and v2 (binary) header reader, run in front of smtp-server
 * (whose own `useProxy` reads only v1). Spec: haproxy.org/download/2.9/doc/proxy-protocol.txt
 *
 * Trusts nothing: the header is read with a byte cap (v1 107 bytes, v2 16 + 1024) and a
 * deadline; anything malformed, too long or too slow ends as `{ kind: "invalid" }` and the
 * caller closes the socket; a disconnect before the header ends is `{ kind: "closed" }` with the
 * bytes that did arrive (none: a TCP health check). Bytes after the header are pushed back
 * into the socket untouched for the SMTP session.
 * `source: null` means the proxy spoke for itself (v2 LOCAL, v1 UNKNOWN, AF_UNSPEC/UNIX):
 * the caller then uses the socket's own peer address.
 */
import { isIPv4, isIPv6, type Socket } from "node:net";
import { PROXY_V1_MAX_BYTES, PROXY_V2_MAX_PAYLOAD_BYTES } from "./limits.ts";
import { normalizeIp } from "./ip.ts";

export interface ProxySource {
  address: string;
  port: number;
}

export type ProxyParse =
  | { kind: "incomplete" }
  | { kind: "invalid"; reason: string }
  | { kind: "ok"; version: 1 | 2; source: ProxySource | null; consumed: number };

const V2_SIGNATURE = Buffer.from("0d0a0d0a000d0a515549540a", "hex");
const V1_PREFIX = Buffer.from("PROXY ");
const V2_HEADER_BYTES = 16;

export function parseProxyHeader(buf: Buffer): ProxyParse {
  if (buf.length === 0) return { kind: "incomplete" };
  try {
    if (buf[0] === V2_SIGNATURE[0]) return parseV2(buf);
    if (buf[0] === V1_PREFIX[0]) return parseV1(buf);
  } catch {
    // A read past the bytes a header declared (a RangeError) would otherwise be thrown in the
    // socket's 'readable' handler: an uncaught exception, and the whole gateway down for one
    // connection. Its bounds are checked below; this is for the one that was missed.
    return { kind: "invalid", reason: "malformed PROXY header" };
  }
  return { kind: "invalid", reason: "not a PROXY header" };
}

function prefixMismatch(buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length);
  return buf.compare(prefix, 0, n, 0, n) !== 0;
}

function parseV1(buf: Buffer): ProxyParse {
  if (prefixMismatch(buf, V1_PREFIX)) return { kind: "invalid", reason: "not a PROXY header" };
  const lf = buf.indexOf(0x0a);
  if (lf === -1) {
    return buf.length >= PROXY_V1_MAX_BYTES ? { kind: "invalid", reason: "PROXY v1 line too long" } : { kind: "incomplete" };
  }
  if (lf + 1 > PROXY_V1_MAX_BYTES) return { kind: "invalid", reason: "PROXY v1 line too long" };
  if (buf[lf - 1] !== 0x0d) return { kind: "invalid", reason: "PROXY v1 line not ended by CRLF" };
  const parts = buf.subarray(0, lf - 1).toString("latin1").split(" ");
  const consumed = lf + 1;
  if (parts[1] === "UNKNOWN") return { kind: "ok", version: 1, source: null, consumed };
  const [, proto, src = "", dst = "", srcPort = "", dstPort = ""] = parts;
  const isFamily = proto === "TCP4" ? isIPv4 : proto === "TCP6" ? isIPv6 : null;
  // isIPv6 accepts a zone id (fe80::1%eth0), which the PROXY format has no room for: it would
  // reach the logs, rules and the Received header as part of the client address.
  const zoned = src.includes("%") || dst.includes("%");
  if (!isFamily || parts.length !== 6 || zoned || !isFamily(src) || !isFamily(dst) || !isPort(srcPort) || !isPort(dstPort)) {
    return { kind: "invalid", reason: "malformed PROXY v1 line" };
  }
  return { kind: "ok", version: 1, source: { address: normalizeIp(src), port: Number(srcPort) }, consumed };
}

function isPort(text: string): boolean {
  return /^(0|[1-9]\d{0,4})$/.test(text) && Number(text) <= 65535;
}

function parseV2(buf: Buffer): ProxyParse {
  if (prefixMismatch(buf, V2_SIGNATURE)) return { kind: "invalid", reason: "not a PROXY header" };
  if (buf.length < V2_HEADER_BYTES) return { kind: "incomplete" };
  const versionCommand = buf[12] ?? 0;
  const family = buf[13] ?? 0;
  const length = buf.readUInt16BE(14);
  if (versionCommand >> 4 !== 2) return { kind: "invalid", reason: "PROXY v2 bad version" };
  const command = versionCommand & 0x0f;
  if (command > 1) return { kind: "invalid", reason: "PROXY v2 bad command" };
  if (length > PROXY_V2_MAX_PAYLOAD_BYTES) return { kind: "invalid", reason: "PROXY v2 header too long" };
  const consumed = V2_HEADER_BYTES + length;
  if (buf.length < consumed) return { kind: "incomplete" };
  if (command === 0) return { kind: "ok", version: 2, source: null, consumed }; // LOCAL
  const payload = buf.subarray(V2_HEADER_BYTES, consumed);
  switch (family) {
    case 0x11: // TCP over IPv4
      if (length < 12) return { kind: "invalid", reason: "PROXY v2 short IPv4 block" };
      return { kind: "ok", version: 2, consumed, source: { address: ipv4(payload.subarray(0, 4)), port: payload.readUInt16BE(8) } };
    case 0x21: // TCP over IPv6
      if (length < 36) return { kind: "invalid", reason: "PROXY v2 short IPv6 block" };
      return { kind: "ok", version: 2, consumed, source: { address: ipv6(payload.subarray(0, 16)), port: payload.readUInt16BE(32) } };
    case 0x00: // UNSPEC
    case 0x31: // UNIX stream
      return { kind: "ok", version: 2, source: null, consumed };
    default:
      return { kind: "invalid", reason: "PROXY v2 unsupported transport (SMTP is TCP only)" };
  }
}

function ipv4(bytes: Buffer): string {
  return [...bytes].join(".");
}

function ipv6(bytes: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return normalizeIp(groups.join(":"));
}

/**
 * Whether the first bytes a client sent are a PROXY header (v1 `PROXY ` or the v2 signature):
 * on a listener without SMTP_PROXY_PROTOCOL that is a proxy configured to send one, whose every
 * connection smtp-server refuses as an early talker (front.ts warns about it).
 */
export function startsLikeProxyHeader(chunk: Buffer): boolean {
  const signature = chunk[0] === V2_SIGNATURE[0] ? V2_SIGNATURE : V1_PREFIX;
  return chunk.length >= signature.length && chunk.compare(signature, 0, signature.length, 0, signature.length) === 0;
}

/** What reading a socket's header came to; `closed`: the peer left first, after `bytes` bytes. */
export type ProxyRead = Exclude<ProxyParse, { kind: "incomplete" }> | { kind: "closed"; bytes: number };

/**
 * Reads the header from a freshly accepted socket. Resolves once (never rejects); on success
 * the bytes after the header are back in the socket's read buffer.
 */
/** The reason readProxyHeader gives when no complete header came within its timeout. */
export const PROXY_TIMEOUT_REASON = "PROXY header timeout";

export function readProxyHeader(socket: Socket, timeoutMs: number): Promise<ProxyRead> {
  return new Promise((resolve) => {
    let buffered: Buffer = Buffer.alloc(0);
    let settled = false;
    const finish = (result: ProxyRead): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off("readable", onReadable);
      socket.off("end", onGone);
      socket.off("close", onGone);
      socket.off("error", onGone);
      resolve(result);
    };
    const onGone = (): void => finish({ kind: "closed", bytes: buffered.length });
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while (!settled && (chunk = socket.read() as Buffer | null) !== null) {
        buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
        const parsed = parseProxyHeader(buffered);
        if (parsed.kind === "incomplete") continue;
        if (parsed.kind === "ok" && parsed.consumed < buffered.length) socket.unshift(buffered.subarray(parsed.consumed));
        finish(parsed);
      }
    };
    const timer = setTimeout(() => finish({ kind: "invalid", reason: PROXY_TIMEOUT_REASON }), timeoutMs);
    socket.on("readable", onReadable);
    socket.on("end", onGone);
    socket.on("close", onGone);
    socket.on("error", onGone);
  });
}
