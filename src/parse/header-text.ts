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
  return decodeHeaderBytes(field.value, charset).replace(/\r/g, " ").replace(/^[ \t]+|[ \t]+$/g, "");
}
