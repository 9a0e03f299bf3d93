/**
 * The webhook's JSON body as one Buffer, written in pieces: the bytes of JSON.stringify of the
 * payload (webhook-payload.ts), with `raw` — the message in base64, 4/3 of its size — encoded
 * straight from the stored bytes into its place. Built as one string, the body cost the base64
 * string, the JSON string, its UTF-8 Buffer and fetch's own copy of that: ~5× the message on
 * top of it for every post (two big posts at once: +650 MB). Encoding with Buffer's base64 in
 * pieces instead left ~20 MB of piece strings for the GC to find for a 25 MB message; the loop
 * below leaves nothing (~45 ms for 25 MB). Text and html are escaped straight into the body as well
 * (writeJsonString).
 */
import type { WebhookFields } from "./webhook-payload.ts";

/** Bytes per chunk handed to fetch. */
const STREAM_CHUNK_BYTES = 64 * 1024;

const BASE64 = Buffer.from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", "latin1");
const PAD = 0x3d;

export function webhookBody(fields: WebhookFields, raw: Uint8Array): Buffer {
  const { text, html, attachments, size, parseError, ...first } = fields;
  // The payload's order (`first` is id … headers); `raw` sits between `attachments` and `size`,
  // where it has always been.
  const opening = `${JSON.stringify(first).slice(0, -1)},"text":`;
  const middle = `,"attachments":${JSON.stringify(attachments)},"raw":"`;
  const tail = `","size":${size}${parseError === undefined ? "" : `,"parseError":${JSON.stringify(parseError)}`}}`;
  const head = (out: Buffer | null): number => {
    let at = out ? out.write(opening) : Buffer.byteLength(opening);
    at = writeJsonString(text, out, at);
    at += out ? out.write(',"html":', at) : 8;
    at = writeJsonString(html, out, at);
    return at + (out ? out.write(middle, at) : Buffer.byteLength(middle));
  };
  const body = Buffer.allocUnsafe(head(null) + 4 * Math.ceil(raw.byteLength / 3) + Buffer.byteLength(tail));
  const end = writeBase64(raw, body, head(body));
  body.write(tail, end);
  return body;
}

/** JSON's two-character escapes of control characters (the others are \u00XX). */
const SHORT_ESCAPES: Record<number, number> = { 0x08: 0x62, 0x09: 0x74, 0x0a: 0x6e, 0x0c: 0x66, 0x0d: 0x72 };
const HEX = Buffer.from("0123456789abcdef", "latin1");

/**
 * JSON.stringify(value) as UTF-8, written into `out` at `at` (returns the end); with `out` null,
 * only counted. A loop over the characters, like writeBase64: the escaped string of a 24 MB text
 * was one 48 MB string (JSC builds it with 16-bit characters), and escaping it in slices left
 * their strings for the GC to find. Same output as JSON.stringify: `"`, `\\` and control
 * characters escaped, lone surrogates as \udXXX, everything else as UTF-8.
 */
export function writeJsonString(value: string | null, out: Buffer | null, at: number): number {
  if (value === null) return out ? at + out.write("null", at) : at + 4;
  let o = at;
  const put = (byte: number): void => {
    if (out) out[o] = byte;
    o++;
  };
  const escapeHex = (code: number): void => {
    put(0x5c), put(0x75);
    for (const shift of [12, 8, 4, 0]) put(HEX[(code >> shift) & 15]!);
  };
  put(0x22);
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x80) {
      if (c >= 0x20 && c !== 0x22 && c !== 0x5c) put(c);
      else if (c === 0x22 || c === 0x5c) put(0x5c), put(c);
      else if (SHORT_ESCAPES[c] !== undefined) put(0x5c), put(SHORT_ESCAPES[c]);
      else escapeHex(c);
    } else if (c < 0x800) {
      put(0xc0 | (c >> 6)), put(0x80 | (c & 63));
    } else if (c < 0xd800 || c > 0xdfff) {
      put(0xe0 | (c >> 12)), put(0x80 | ((c >> 6) & 63)), put(0x80 | (c & 63));
    } else {
      const low = c <= 0xdbff ? value.charCodeAt(i + 1) : NaN;
      if (!(low >= 0xdc00 && low <= 0xdfff)) {
        escapeHex(c);
        continue;
      }
      const p = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00);
      put(0xf0 | (p >> 18)), put(0x80 | ((p >> 12) & 63)), put(0x80 | ((p >> 6) & 63)), put(0x80 | (p & 63));
      i++;
    }
  }
  put(0x22);
  return o;
}

/** Writes `bytes` as base64 (RFC 4648, padded, no line breaks) into `out` at `at`; returns the end. */
export function writeBase64(bytes: Uint8Array, out: Uint8Array, at: number): number {
  const whole = bytes.length - (bytes.length % 3);
  let o = at;
  for (let i = 0; i < whole; i += 3) {
    const v = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out[o++] = BASE64[v >> 18]!;
    out[o++] = BASE64[(v >> 12) & 63]!;
    out[o++] = BASE64[(v >> 6) & 63]!;
    out[o++] = BASE64[v & 63]!;
  }
  const left = bytes.length - whole;
  if (left > 0) {
    const v = (bytes[whole]! << 16) | (left === 2 ? bytes[whole + 1]! << 8 : 0);
    out[o++] = BASE64[v >> 18]!;
    out[o++] = BASE64[(v >> 12) & 63]!;
    out[o++] = left === 2 ? BASE64[(v >> 6) & 63]! : PAD;
    out[o++] = PAD;
  }
  return o;
}

/**
 * The body as a request stream of slices (no copies). fetch copied a Buffer body whole; a stream
 * goes out with the Content-Length header the caller sets (not chunked: receivers such as
 * Python's http.server read exactly Content-Length bytes).
 */
export function bodyStream(body: Uint8Array): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= body.byteLength) return controller.close();
      controller.enqueue(body.subarray(at, at + STREAM_CHUNK_BYTES));
      at += STREAM_CHUNK_BYTES;
    },
  });
}
