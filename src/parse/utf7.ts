/**
 * UTF-7 (RFC 2152), which TextDecoder does not know. Mail still carries it now and then, and
 * Outlook shows it: a Subject `=?utf-7?Q?+AEkAbgB2AG8AaQBjAGU-?=` reads "Invoice" there, and a
 * file name `=?utf-7?Q?evil+AC4-exe?=` is "evil.exe". Read as another charset it stayed
 * `+AEkAbgB2...`, so subject, body and attachment rules missed it (a known filter-evasion
 * trick). Linear in the input; never throws: a malformed shifted run is decoded as far as its
 * base64 goes and the rest dropped, as permissive decoders do. A lone surrogate (`+2AA-`)
 * becomes U+FFFD, as TextDecoder makes it for UTF-16.
 */

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const VALUE_OF = new Int8Array(128).fill(-1);
for (let i = 0; i < BASE64.length; i++) VALUE_OF[BASE64.charCodeAt(i)] = i;

const PLUS = 0x2b;
const MINUS = 0x2d;

/**
 * Decodes into one buffer of UTF-16LE code units (never more units than input bytes: a direct
 * byte is one, six base64 bits are less than one), read as a string once at the end. Lone
 * surrogates are replaced as they are written: kept, they reached the webhook post as `\ud800`
 * escapes, which strict JSON readers refuse (PostgreSQL's jsonb, Rust's serde_json) and Python
 * cannot encode back to UTF-8, so any sender could make its posts fail at such a receiver; a pair
 * split over two runs (`+2D3-+3gA-`) still makes its character. A per-run array, a Buffer per stretch of
 * direct text and a string append per `+` cost ~170 ns per `+!` pair: 24 MB of them in text
 * parts (six under the 4 MB cut of a text part) took 2.8 s of serve's CPU and 1.2 GB, where a
 * text part in any other charset costs a tenth of that.
 */
export function decodeUtf7(bytes: Uint8Array): string {
  const out = Buffer.allocUnsafe(bytes.length * 2);
  let n = 0;
  // Whether the last unit written is a high surrogate still waiting for its low one.
  let high = false;
  const push = (unit: number): void => {
    const low = unit >= 0xdc00 && unit <= 0xdfff;
    if (high && !low) (out[n - 2] = 0xfd), (out[n - 1] = 0xff);
    const written = low && !high ? 0xfffd : unit;
    out[n++] = written & 0xff;
    out[n++] = written >> 8;
    high = unit >= 0xd800 && unit <= 0xdbff;
  };
  let i = 0;
  while (i < bytes.length) {
    const byte = bytes[i] as number;
    i++;
    if (byte !== PLUS) {
      push(byte); // a direct character (ASCII in valid UTF-7; other bytes kept as Latin-1)
      continue;
    }
    const from = i;
    let bits = 0;
    let count = 0;
    for (; i < bytes.length; i++) {
      const value = (bytes[i] as number) < 128 ? (VALUE_OF[bytes[i] as number] as number) : -1;
      if (value < 0) break;
      bits = ((bits << 6) | value) & 0xffffff;
      count += 6;
      if (count >= 16) {
        count -= 16;
        push((bits >> count) & 0xffff); // big-endian, 16 bits each; leftover bits dropped
      }
    }
    // `+-` is a plus sign; otherwise the run, and a `-` right after it is absorbed.
    if (i === from && bytes[i] === MINUS) push(PLUS);
    if (bytes[i] === MINUS) i++;
  }
  if (high) (out[n - 2] = 0xfd), (out[n - 1] = 0xff);
  return out.toString("utf16le", 0, n);
}

/** A TextDecoder-shaped UTF-7 decoder (charset.ts hands it out for the UTF-7 labels). */
export const utf7Decoder = { decode: (bytes?: Uint8Array | ArrayBuffer): string => decodeUtf7(bytes === undefined ? new Uint8Array(0) : bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)) };
