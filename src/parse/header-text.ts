/**
 * Header field bytes → text, as a mail client shows them: UTF-8 when valid (RFC 6532), else
 * the charset the message's top-level Content-Type declares (legacy clients write raw EUC-KR,
 * KOI8-R or Big5 headers), else the charset its first text part declares (a multipart message
 * has none at the top: a raw GBK or Shift_JIS subject was windows-1252 mojibake that no subject
 * rule matched, where Thunderbird and Gmail show the text), else windows-1252. Shared by the
 * rules' facts (extract.ts) and the webhook payload, so that a receiver sees the subject and
 * names a rule was matched on. Trusts nothing in the bytes; never throws.
 */
import { decodeHeaderBytes } from "./charset.ts";
import type { RawHeaderField } from "./header-block.ts";
import { HEADER_SECTION_BYTES } from "./limits.ts";

/** How raw 8-bit header bytes of one message are read (see the module comment). */
export interface HeaderCharset {
  /** The top-level Content-Type's charset parameter. */
  declared: string | null;
  /** The charset of the first text part, looked for only when a field needs it. */
  ofParts: () => string | null;
}

/** How much of the body is searched for a text part's charset: where a first part's header is. */
export const PART_CHARSET_SEARCH_BYTES = 64 * 1024;

/**
 * `Content-Type: text/…` of a part header with a charset parameter, on one line or folded (the
 * part-header continuation lines are `\r?\n[ \t]`). Each candidate is scanned to its field's
 * end at most, and fields do not overlap: linear in the searched bytes.
 */
const TEXT_PART_CHARSET = /^content-type:[ \t]*text\/[^;\r\n]*;(?:[^\r\n]|\r?\n[ \t])*?charset[ \t]*=[ \t]*"?([^";\s]{1,64})/im;

/** The HeaderCharset of a message: its header fields and body (the first bytes of the body searched, once, when asked). */
export function headerCharset(fields: readonly RawHeaderField[], raw: Uint8Array, bodyStart: number): HeaderCharset {
  let ofParts: string | null | undefined;
  return {
    declared: declaredCharset(fields),
    ofParts: () => {
      if (ofParts === undefined) {
        // Never past HEADER_SECTION_BYTES: serve parses only those of a spilled message for
        // header-only rules (the starter rules), and a part charset past them (after a header block
        // over 1 MB) decoded a raw Shift_JIS subject as 見積 in `mailgw test` and in a full parse,
        // and as windows-1252 mojibake in serve, which a `subject contains 見積` rule then missed.
        const end = Math.min(raw.byteLength, bodyStart + PART_CHARSET_SEARCH_BYTES, HEADER_SECTION_BYTES);
        const head = Buffer.from(raw.buffer, raw.byteOffset + bodyStart, Math.max(0, end - bodyStart));
        ofParts = TEXT_PART_CHARSET.exec(head.toString("latin1"))?.[1] ?? null;
      }
      return ofParts;
    },
  };
}

/** charset parameter of the top-level Content-Type, for raw 8-bit header bytes. */
function declaredCharset(fields: readonly RawHeaderField[]): string | null {
  const contentType = fields.find((field) => field.name === "content-type");
  if (!contentType) return null;
  const match = /charset\s*=\s*"?([^";\s]{1,64})/i.exec(Buffer.from(contentType.value).toString("latin1"));
  return match?.[1] ?? null;
}

/** A field's value as text: bytes decoded, CRs made spaces, outer whitespace trimmed (RFC 2047 words kept). */
export function fieldText(field: RawHeaderField, charset: HeaderCharset): string {
  return trimSpaceTab(decodeHeaderBytes(field.value, charset.declared, charset.ofParts).replace(/\r/g, " "));
}

/**
 * `text` without leading and trailing spaces and tabs. Scanned, not `/[ \t]+$/`: that regex
 * retries at every space of a run that does not end the value, and 15 fields of 64 KB of
 * spaces (folded lines) then one letter took 20 s, the event loop or a parse worker stalled.
 */
function trimSpaceTab(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && isSpaceTab(text.charCodeAt(start))) start++;
  while (end > start && isSpaceTab(text.charCodeAt(end - 1))) end--;
  return start === 0 && end === text.length ? text : text.slice(start, end);
}

function isSpaceTab(code: number): boolean {
  return code === 0x20 || code === 0x09;
}
