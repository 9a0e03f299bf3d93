/**
 * UTF-7 (RFC 2152), which TextDecoder does not know. Mail still carries it now and then, and
 * Outlook shows it: a Subject `=?utf-7?Q?+AEkAbgB2AG8AaQBjAGU-?=` reads "Invoice" there, and a
 * file name `=?utf-7?Q?evil+AC4-exe?=` is "evil.exe". Read as another charset it stayed
 * `+AEkAbgB2...`, so subject, body and attachment rules missed it (a known filter-evasion
 * trick). Linear in the input; never throws: a malformed shifted run is decoded as far as its
 * base64 goes and the rest dropped, as permissive decoders do.
 */

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const VALUE_OF = new Int8Array(128).fill(-1);
for (let i = 0; i < BASE64.length; i++) VALUE_OF[BASE64.charCodeAt(i)] = i;

const PLUS = 0x2b;
const MINUS = 0x2d;

/** Index just past the base64 run of a shifted sequence starting at `from`. */
function runEnd(bytes: Uint8Array, from: number): number {
  let i = from;
  while (i < bytes.length && (bytes[i] as number) < 128 && (VALUE_OF[bytes[i] as number] as number) >= 0) i++;
  return i;
}

/** The UTF-16 code units a base64 run carries (big-endian, 16 bits each; leftover bits dropped). */
function shiftedText(bytes: Uint8Array, from: number, to: number): string {
  const units: number[] = [];
  let bits = 0;
  let count = 0;
  for (let i = from; i < to; i++) {
    bits = ((bits << 6) | (VALUE_OF[bytes[i] as number] as number)) & 0xffffff;
    count += 6;
    if (count >= 16) {
      count -= 16;
      units.push((bits >> count) & 0xffff);
    }
  }
  let text = "";
  for (let i = 0; i < units.length; i += 4096) text += String.fromCharCode(...units.slice(i, i + 4096));
  return text;
}

export function decodeUtf7(bytes: Uint8Array): string {
  let text = "";
  let plainFrom = 0;
  let i = 0;
  while (i < bytes.length) {
    if (bytes[i] !== PLUS) {
      i++;
      continue;
    }
    text += latin1(bytes, plainFrom, i);
    const end = runEnd(bytes, i + 1);
    // `+-` is a plus sign; otherwise the run, and a `-` right after it is absorbed.
    text += end === i + 1 && bytes[end] === MINUS ? "+" : shiftedText(bytes, i + 1, end);
    i = bytes[end] === MINUS ? end + 1 : end;
    plainFrom = i;
  }
  return text + latin1(bytes, plainFrom, bytes.length);
}

/** The direct characters between two shifted runs (ASCII in valid UTF-7; other bytes kept as Latin-1). */
function latin1(bytes: Uint8Array, from: number, to: number): string {
  return from >= to ? "" : Buffer.from(bytes.buffer, bytes.byteOffset + from, to - from).toString("latin1");
}

/** A TextDecoder-shaped UTF-7 decoder (charset.ts hands it out for the UTF-7 labels). */
export const utf7Decoder = { decode: (bytes?: Uint8Array | ArrayBuffer): string => decodeUtf7(bytes === undefined ? new Uint8Array(0) : bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)) };
