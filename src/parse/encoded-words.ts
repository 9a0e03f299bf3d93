/**
 * RFC 2047 encoded-word decoding for header values (subject, display names, any header).
 * Linear in the input: one regex pass whose matches cannot overlap, bytes of adjacent words
 * in the same charset are concatenated as bytes and decoded once (so a character split over
 * two words comes out whole, for B and Q alike). postal-mime's decodeWords joins words by
 * growing a string and re-testing it, which takes seconds on a 2 MB header; this replaces it.
 * Malformed words are left as they are; never throws.
 */
import { decoderFor } from "./charset.ts";

/** charset ? encoding ? text; a charset label is at most 64 characters, none contain '?' or spaces. */
const ENCODED_WORD = /=\?([^?\s]{1,64})\?([QqBb])\?([^?]*)\?=/g;
const LINEAR_WHITESPACE = /^[ \t\r\n]*$/;

/** The value of a hex digit's character code (either case), -1 for anything else. */
export function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x41 && code <= 0x46) return code - 0x37;
  if (code >= 0x61 && code <= 0x66) return code - 0x57;
  return -1;
}

/**
 * Bytes of `text` with `escape` + two hex digits as the byte they name (Q: `=`, RFC 2231: `%`),
 * `_` as a space when `underscoreIsSpace` (Q only), any other character as its UTF-8 bytes.
 */
export function hexEscapedBytes(text: string, escape: number, underscoreIsSpace: boolean): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 0x5f && underscoreIsSpace) {
      out.push(0x20);
    } else if (code === escape && i + 2 < text.length && hexValue(text.charCodeAt(i + 1)) >= 0 && hexValue(text.charCodeAt(i + 2)) >= 0) {
      out.push(hexValue(text.charCodeAt(i + 1)) * 16 + hexValue(text.charCodeAt(i + 2)));
      i += 2;
    } else if (code < 0x80) {
      out.push(code);
    } else {
      for (const byte of Buffer.from(text[i] ?? "", "utf8")) out.push(byte);
    }
  }
  return Uint8Array.from(out);
}

function wordBytes(encoding: string, text: string): Uint8Array {
  if (encoding === "B" || encoding === "b") return Buffer.from(text.replace(/[^A-Za-z0-9+/]/g, ""), "base64");
  return hexEscapedBytes(text, 0x3d, true);
}

interface PendingRun {
  charset: string;
  chunks: Uint8Array[];
}

function countReplacements(text: string): number {
  let count = 0;
  for (let at = text.indexOf("\ufffd"); at >= 0; at = text.indexOf("\ufffd", at + 1)) count++;
  return count;
}

/**
 * Decodes a run of adjacent words. Joined bytes first (a UTF-8 character split over two
 * words comes out whole); when that yields replacement characters, word by word as well
 * (stateful charsets such as ISO-2022-JP end every word with an escape sequence, and two
 * escapes in a row are an error when joined), keeping whichever has fewer.
 */
function renderRun(run: PendingRun): string {
  const decoder = decoderFor(run.charset);
  const joined = decoder.decode(Buffer.concat(run.chunks));
  if (run.chunks.length === 1 || !joined.includes("\ufffd")) return joined;
  const separate = run.chunks.map((chunk) => decoder.decode(chunk)).join("");
  return countReplacements(separate) < countReplacements(joined) ? separate : joined;
}

/** Decodes every RFC 2047 encoded word in `value`; text around the words is kept as is. */
export function decodeEncodedWords(value: string): string {
  if (value.indexOf("=?") < 0) return value;
  const parts: string[] = [];
  let run: PendingRun | null = null;
  let copied = 0;
  ENCODED_WORD.lastIndex = 0;
  for (let match = ENCODED_WORD.exec(value); match; match = ENCODED_WORD.exec(value)) {
    const between = value.slice(copied, match.index);
    const charset = (match[1] ?? "").toLowerCase();
    const bytes = wordBytes(match[2] ?? "Q", match[3] ?? "");
    const adjacent = run !== null && LINEAR_WHITESPACE.test(between);
    if (run && adjacent && run.charset === charset) {
      run.chunks.push(bytes);
    } else {
      if (run) parts.push(renderRun(run));
      if (!adjacent) parts.push(between);
      run = { charset, chunks: [bytes] };
    }
    copied = match.index + match[0].length;
  }
  if (run) parts.push(renderRun(run));
  parts.push(value.slice(copied));
  return parts.join("");
}
