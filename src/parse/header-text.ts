/**
 * Header field bytes → text, as a mail client shows them: UTF-8 when valid (RFC 6532), else
 * the charset the message's top-level Content-Type declares (legacy clients write raw EUC-KR,
 * KOI8-R or Big5 headers), else windows-1252. Shared by the rules' facts (extract.ts) and the
 * webhook payload, so that a receiver sees the subject and names a rule was matched on.
 * Trusts nothing in the bytes; never throws.
 */
import { decodeHeaderBytes } from "./charset.ts";
import type { RawHeaderField } from "./header-block.ts";

/** charset parameter of the top-level Content-Type, for raw 8-bit header bytes. */
export function declaredCharset(fields: readonly RawHeaderField[]): string | null {
  const contentType = fields.find((field) => field.name === "content-type");
  if (!contentType) return null;
  const match = /charset\s*=\s*"?([^";\s]{1,64})/i.exec(Buffer.from(contentType.value).toString("latin1"));
  return match?.[1] ?? null;
}

/** A field's value as text: bytes decoded, CRs made spaces, outer whitespace trimmed (RFC 2047 words kept). */
export function fieldText(field: RawHeaderField, charset: string | null): string {
  return trimSpaceTab(decodeHeaderBytes(field.value, charset).replace(/\r/g, " "));
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
