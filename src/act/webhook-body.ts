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

/**
 * How JSON.stringify writes each ASCII character: 0 as it is, else the character after "\\"
 * ("u" for \u00XX, the control characters without a two-character escape).
 */
const ESCAPES = new Uint8Array(128);
for (let c = 0; c < 0x20; c++) ESCAPES[c] = 0x75;
for (const [c, e] of [[0x08, 0x62], [0x09, 0x74], [0x0a, 0x6e], [0x0c, 0x66], [0x0d, 0x72], [0x22, 0x22], [0x5c, 0x5c]]) ESCAPES[c!] = e!;
const HEX = Buffer.from("0123456789abcdef", "latin1");

/**
 * JSON.stringify(value) as UTF-8, written into `out` at `at` (returns the end); with `out` null,
 * only counted. A loop over the characters, like writeBase64: the escaped string of a 24 MB text
 * was one 48 MB string (JSC builds it with 16-bit characters), and escaping it in slices left
 * their strings for the GC to find. Same output as JSON.stringify: `"`, `\\` and control
 * characters escaped, lone surrogates as \udXXX, everything else as UTF-8. Counting and writing
 * are two plain loops, without a closure, or an array per escape: 24 MB of control characters
 * (each one \u00XX: a 176 MB body) took 1.35 s of the delivery thread that way, and raised RSS
 * by 550 MB instead of 210.
 */
export function writeJsonString(value: string | null, out: Buffer | null, at: number): number {
  if (value === null) return out ? at + out.write("null", at) : at + 4;
  if (out === null) return at + jsonStringBytes(value);
  let o = at;
  out[o++] = 0x22;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x80) {
      const escape = ESCAPES[c]!;
      if (escape === 0) out[o++] = c;
      else if (escape === 0x75) o = writeHexEscape(c, out, o);
      else (out[o++] = 0x5c), (out[o++] = escape);
    } else if (c < 0x800) {
      (out[o++] = 0xc0 | (c >> 6)), (out[o++] = 0x80 | (c & 63));
    } else if (c < 0xd800 || c > 0xdfff) {
      (out[o++] = 0xe0 | (c >> 12)), (out[o++] = 0x80 | ((c >> 6) & 63)), (out[o++] = 0x80 | (c & 63));
    } else {
      const low = c <= 0xdbff ? value.charCodeAt(i + 1) : NaN;
      if (!(low >= 0xdc00 && low <= 0xdfff)) {
        o = writeHexEscape(c, out, o);
        continue;
      }
      const p = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00);
      (out[o++] = 0xf0 | (p >> 18)), (out[o++] = 0x80 | ((p >> 12) & 63)), (out[o++] = 0x80 | ((p >> 6) & 63)), (out[o++] = 0x80 | (p & 63));
      i++;
    }
  }
  out[o++] = 0x22;
  return o;
}

/** The bytes writeJsonString writes for `value`. */
function jsonStringBytes(value: string): number {
  let n = 2;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x80) n += ESCAPES[c] === 0 ? 1 : ESCAPES[c] === 0x75 ? 6 : 2;
    else if (c < 0x800) n += 2;
    else if (c < 0xd800 || c > 0xdfff) n += 3;
    else {
      const low = c <= 0xdbff ? value.charCodeAt(i + 1) : NaN;
      if (low >= 0xdc00 && low <= 0xdfff) (n += 4), i++;
      else n += 6;
    }
  }
  return n;
}

/** \uXXXX for `code` into `out` at `o`; returns the end. */
function writeHexEscape(code: number, out: Buffer, o: number): number {
  out[o] = 0x5c;
  out[o + 1] = 0x75;
  out[o + 2] = HEX[(code >> 12) & 15]!;
  out[o + 3] = HEX[(code >> 8) & 15]!;
  out[o + 4] = HEX[(code >> 4) & 15]!;
  out[o + 5] = HEX[code & 15]!;
  return o + 6;
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
export function bodyStream(body: Uint8Array, onPull?: () => void): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream<Uint8Array>({
    // fetch pulls as the socket takes the bytes (`onPull`: the upload's progress; after the last
    // one, only what the socket still buffers is left).
    pull(controller) {
      onPull?.();
      if (at >= body.byteLength) return controller.close();
      controller.enqueue(body.subarray(at, at + STREAM_CHUNK_BYTES));
      at += STREAM_CHUNK_BYTES;
    },
  });
}
