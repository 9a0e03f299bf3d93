/**
 * The webhook's JSON body as one Buffer, written in pieces: the bytes of JSON.stringify of the
 * payload (webhook-payload.ts), with `raw` — the message in base64, 4/3 of its size — encoded
 * straight from the stored bytes into its place. Built as one string, the body cost the base64
 * string, the JSON string, its UTF-8 Buffer and fetch's own copy of that: ~5× the message on
 * top of it for every post (two big posts at once: +650 MB). Encoding with Buffer's base64 in
 * pieces instead left ~20 MB of piece strings for the GC to find for a 25 MB message; the loop
 * below leaves nothing (~45 ms for 25 MB).
 */
import type { WebhookFields } from "./webhook-payload.ts";

/** Bytes per chunk handed to fetch. */
const STREAM_CHUNK_BYTES = 64 * 1024;

const BASE64 = Buffer.from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", "latin1");
const PAD = 0x3d;

export function webhookBody(fields: WebhookFields, raw: Uint8Array): Buffer {
  const { size, parseError, ...before } = fields;
  // `raw` sits between `attachments` and `size`, where the payload has always had it.
  const head = Buffer.from(`${JSON.stringify(before).slice(0, -1)},"raw":"`);
  const tail = Buffer.from(`","size":${size}${parseError === undefined ? "" : `,"parseError":${JSON.stringify(parseError)}`}}`);
  const body = Buffer.allocUnsafe(head.byteLength + 4 * Math.ceil(raw.byteLength / 3) + tail.byteLength);
  body.set(head, 0);
  const end = writeBase64(raw, body, head.byteLength);
  body.set(tail, end);
  return body;
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
