/**
 * The MIME type a part is taken as, shared by the parser's hook (part-names.ts) and the content
 * cut (leaf-cut.ts), so that the part the parser reads as text gets a text part's cap. Pure;
 * never throws; linear in the value.
 */

/** RFC 2045 token characters. */
const TOKEN = "[a-z0-9!#$%&'*+.^_`|~-]+";

/** `type/subtype` at the start of a Content-Type value, with the spaces RFC 2045 allows around '/' (RFC 822 linear whitespace). */
const LEADING_MIME_TYPE = new RegExp(`^(${TOKEN})[ \\t\\r\\n]*/[ \\t\\r\\n]*(${TOKEN})`, "i");

/** A comment without nested ones (what a Content-Type carries, if any). */
const COMMENT = /\([^()]*\)/g;

/**
 * A leaf's type as a mail client reads it: `text plain`, `text`, `<html>` or an empty value
 * are not a type, and RFC 2045 §5.2 says to take text/plain then; `text/plain>` or
 * `application/pdf name="x.pdf"` (no `;`) are the type they start with. Kept as written, the
 * text of such a part was neither body nor a recognisable attachment: `body` and
 * `attachment_type` rules missed it (spam uses broken types for just that). Comments and the
 * spaces around '/' that RFC 2045 allows are not part of the type: read as "not a type",
 * `application / x-msdownload` or `(c) application/x-msdownload` became text/plain, hiding the
 * attachment's type from an `attachment_type` rule (and a part without a name from the
 * attachments altogether).
 */
export function validMimeType(value: string): string {
  const match = LEADING_MIME_TYPE.exec(value.replace(COMMENT, " ").trim());
  return match ? `${match[1]}/${match[2]}`.toLowerCase() : "text/plain";
}
