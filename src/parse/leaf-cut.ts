/**
 * What of a body postal-mime needs to see: every MIME boundary line and every part header,
 * but not megabytes of one part's content. The rules read only the first
 * MAX_BODY_TEXT_CHARS of text and the names and types of attachments, yet postal-mime keeps
 * a whole part in memory several times over (line chunks, a Blob, an ArrayBuffer, a string):
 * a 25 MB text part cost ~250 MB and ~0.4 s. So the body is cut into spans at lines starting
 * with "--" (every boundary line is one, so no cut can touch the MIME structure) and the
 * content of a span past its part header is kept only up to a cap:
 *   - Content-Type multipart/* or message/*: no cap (nested messages are parsed in turn);
 *   - text/*, no Content-Type, a value that is not a type (text/plain to the parser, see
 *     mime-type.ts) or anything unclear (a "--" line inside a text): TEXT_PART_BYTES,
 *     enough for MAX_BODY_TEXT_CHARS of text in any transfer encoding short of
 *     quoted-printable of 4-byte characters;
 *   - any other type (attachments: only name and type are facts): OTHER_PART_BYTES.
 * Cuts fall on line ends. Content lines of all spans together (containers' too) are also
 * capped, by the caller's ContentBudget: postal-mime spends ~0.5 µs per line whatever its length,
 * so 20 MB of bare newlines took 10-15 s although every byte cap held. So are the padded units
 * of base64 content (MAX_BASE64_PAD_UNITS: its decoder spends ~1 µs on each; see padBudgetEnd).
 * budgetEnd serves a parse that needs whole parts instead (the webhook's payload): no byte caps,
 * the same budget walk (lines, padded units) and a cap on "--" lines, cutting the body short.
 * A budget cuts contents, never part headers: each span's header lines are kept, and so is the
 * header block of a message/* part (the attached message's Content-Type: without it the files
 * inside were hidden from the rules by any earlier text part that used up a budget), up to
 * NESTED_HEADER_BYTES in all.
 * Trusts nothing in the bytes; linear in the body size. Never throws.
 */
import { MAX_BODY_TEXT_CHARS } from "./limits.ts";
import { validMimeType } from "./mime-type.ts";

/** What of the content the parser may still be handed: lines and runs of '=' (shared by a message and its nested ones). */
export interface ContentBudget {
  left: number;
  /** Set when content was cut because the budget ran out. */
  cut: boolean;
  /** Runs of '=' in content that may lie inside a base64 part it may still be handed (see padBudgetEnd). */
  padsLeft: number;
  /** Set when content was cut because `padsLeft` ran out. */
  padsCut: boolean;
  /** Bytes of attached messages' header blocks it may still be handed past the budgets above. */
  headerBytesLeft?: number;
}

/** Content bytes of a text part handed to the parser: 4 bytes per body-text character kept. */
export const TEXT_PART_BYTES = 4 * MAX_BODY_TEXT_CHARS;
/** Content bytes of a non-text leaf part (an attachment) handed to the parser. */
export const OTHER_PART_BYTES = 64 * 1024;
/** Part header bytes looked at for the Content-Type. */
export const PART_HEADER_SCAN_BYTES = 16 * 1024;
/**
 * Header block bytes of attached messages (message/* parts) kept past a used-up line or pad
 * budget, per message with its nested ones: postal-mime's own cap on part headers
 * (MAX_MIME_PART_HEADER_BYTES), as these are part headers once the attached message is parsed.
 */
export const NESTED_HEADER_BYTES = 256 * 1024;

export type Kind = "container" | "text" | "other";

export function kindOf(contentType: string | null): Kind {
  // The type the parser will give the part (mime-type.ts): one that is not a type is text/plain
  // there, body text. Read here as an attachment (`<text/plain>`, `"text/plain"`, `(c)text/plain`
  // hold a '/'), its text was cut at 64 KB and a `body` rule missed the words past that.
  const type = validMimeType(contentType ?? "");
  if (type.startsWith("multipart/") || type.startsWith("message/")) return "container";
  return type.startsWith("text/") ? "text" : "other";
}

function capOf(kind: Kind): number {
  return kind === "container" ? Number.POSITIVE_INFINITY : kind === "text" ? TEXT_PART_BYTES : OTHER_PART_BYTES;
}

/** End of the header lines starting at `from` (just past the blank line), or -1 within `limit`. */
export function headerEnd(buffer: Buffer, from: number, limit: number): number {
  // Searched in [from - 1, limit) only: an unbounded indexOf per span would be quadratic.
  const window = buffer.subarray(from - 1, Math.max(from - 1, limit) + 2);
  const a = window.indexOf("\n\n");
  const b = window.indexOf("\n\r\n");
  const at = [a, b].filter((i) => i >= 0 && from - 1 + i < limit).sort((x, y) => x - y)[0];
  if (at === undefined) return -1;
  return from - 1 + at + (at === b && (a < 0 || b < a) ? 3 : 2);
}

/**
 * From a part's header lines: its Content-Type, whether postal-mime decodes its content as
 * quoted-printable, whether it may be base64 (the word anywhere in them: erring towards yes only
 * costs pad budget), and whether it is transfer-encoded at all.
 */
export function partHeader(buffer: Buffer, start: number, end: number): { type: string | null; quotedPrintable: boolean; base64: boolean; encoded: boolean } {
  const text = buffer.toString("latin1", start, Math.min(end, start + PART_HEADER_SCAN_BYTES));
  const type = /^content-type:[ \t\r\n]*([^\s;]+)/im.exec(text)?.[1] ?? null;
  const encoding = transferEncodingValue(text);
  return {
    type,
    quotedPrintable: encoding !== null && QUOTED_PRINTABLE_VALUE.test(encoding),
    base64: /base64/i.test(text),
    encoded: transferEncoded(encoding),
  };
}

/** Whether a Content-Transfer-Encoding value (null: none) is an encoding postal-mime decodes: its first token is not 7bit, 8bit or binary. */
export function transferEncoded(value: string | null): boolean {
  const token = value === null ? "" : (/^[ \t\r\n]*"?([^\s;"(]*)/.exec(value)?.[1] ?? "").toLowerCase();
  return !["", "7bit", "8bit", "binary"].includes(token);
}

/**
 * A Content-Transfer-Encoding value postal-mime decodes as quoted-printable: its first token is
 * "quoted-printable" (one holding "base64", such as "quoted-printable-base64", goes to the base64
 * decoder). Anything less plain (a comment first) is not taken as quoted-printable, so its '='
 * runs count: the safe side.
 */
export const QUOTED_PRINTABLE_VALUE = /^[ \t\r\n]*"?quoted-printable(?![\w-])/i;

/**
 * The value of the FIRST Content-Transfer-Encoding field in the header lines `text` (null: none),
 * read as postal-mime's mime-node.js reads them: lines split at "\n", continued by lines starting
 * with SP or HTAB, the name trimmed of SP and HTAB. A regex over every line took
 * `Content-Transfer-Encoding: base64` followed by a second field saying quoted-printable (or
 * `Content-Transfer-Encoding : base64`) as quoted-printable, and the base64 decoder's '=' runs
 * went uncounted (18 MB of them: 4 s of the delivery thread).
 */
function transferEncodingValue(text: string): string | null {
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    if (colon < 0 || !/^[ \t]*content-transfer-encoding[ \t]*$/i.test(line.slice(0, colon)) || (i > 0 && /^[ \t]/.test(line))) continue;
    let value = line.slice(colon + 1);
    for (let j = i + 1; j < lines.length && /^[ \t]/.test(lines[j]!); j++) value += lines[j];
    return value;
  }
  return null;
}

/**
 * `to`, or the start of the line where the content in [from, to) uses up the pad budget. A unit
 * is a run of '=' (postal-mime's base64 decoder splits its input there; elsewhere, in a text
 * part's `a=b` lines or quoted-printable escapes, '=' costs it nothing). The caller counts the
 * spans that may lie inside a base64 part: every one from the first header that may declare
 * base64 on, as a span's own header does not say where it lies: "--x" lines and fake part
 * headers inside a base64 part split it too (18 MB of them took 5.5 s; fake quoted-printable
 * ones, not counted, 4.7 s).
 */
function padBudgetEnd(buffer: Buffer, from: number, to: number, lines: ContentBudget): number {
  const window = buffer.subarray(0, to);
  for (let at = window.indexOf(0x3d, from); at >= 0; at = window.indexOf(0x3d, at)) {
    if (lines.padsLeft <= 0) {
      lines.padsCut = true;
      return Math.max(from, buffer.lastIndexOf(0x0a, at) + 1);
    }
    lines.padsLeft--;
    while (at < to && buffer[at] === 0x3d) at++;
  }
  return to;
}

/** `to`, or where the line budget runs out in [from, to): just past the last line it allows. */
function lineBudgetEnd(buffer: Buffer, from: number, to: number, lines: ContentBudget): number {
  const window = buffer.subarray(0, to); // no search runs on past `to`
  for (let at = from; ; ) {
    const lf = window.indexOf(0x0a, at);
    if (lf < 0) return to;
    if (lines.left <= 0) {
      lines.cut = true;
      return at;
    }
    lines.left--;
    at = lf + 1;
  }
}

function isMessage(type: string | null): boolean {
  return type !== null && type.toLowerCase().startsWith("message/");
}

/**
 * Past `keepTo` (where a budget cut the content of a message/* part starting at `from`), the
 * attached message's header block too, while `lines.headerBytesLeft` lasts: the rules see the
 * files inside it only when its Content-Type reaches the parser.
 */
function keepNestedHeader(buffer: Buffer, from: number, next: number, keepTo: number, lines: ContentBudget): number {
  const end = headerEnd(buffer, from, Math.min(next, from + PART_HEADER_SCAN_BYTES));
  const left = lines.headerBytesLeft ?? NESTED_HEADER_BYTES;
  if (end <= keepTo || end - keepTo > left) return keepTo;
  lines.headerBytesLeft = left - (end - keepTo);
  return end;
}

/**
 * The body bytes [bodyStart, end) with over-long leaf contents cut, as slices of `raw` (no
 * copies). `topContentType`: the message's own Content-Type (for the span before the first
 * "--" line). `lines` is used up by the content lines kept. Returns `[raw.subarray(bodyStart,
 * end)]` when nothing is cut.
 */
export function cutLeafContents(
  raw: Uint8Array, bodyStart: number, end: number, topContentType: string | null,
  lines: ContentBudget = { left: Number.POSITIVE_INFINITY, cut: false, padsLeft: Number.POSITIVE_INFINITY, padsCut: false },
  top: { base64: boolean; encoded: boolean } = { base64: false, encoded: false },
): Uint8Array[] {
  const buffer = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  const slices: Uint8Array[] = [];
  let cut = false;
  let spanStart = bodyStart;
  let contentStart = bodyStart;
  let kind = kindOf(topContentType);
  // From the first header that may declare base64 on, any content may be inside a base64 part.
  let base64Seen = top.base64;
  let nestedHeader = isMessage(topContentType) && !top.encoded;
  // A leaf at the top (text/*, an attachment, no Content-Type) is one part to postal-mime: its
  // "--" lines are content, not boundaries, and must not open uncapped "container" spans
  // (a text/plain base64 body of fake multipart spans went to the base64 decoder whole).
  const topIsLeaf = kind !== "container";
  // From the line end before the body, so a body that opens with a "--" line is split there.
  let searchFrom = Math.max(0, bodyStart - 1);
  while (spanStart < end) {
    let next = topIsLeaf ? -1 : buffer.indexOf("\n--", searchFrom);
    next = next < 0 || next >= end ? end : next + 1;
    const capTo = Math.min(next, contentStart + capOf(kind));
    const lastLf = capTo < next ? buffer.lastIndexOf(0x0a, capTo - 1) : -1;
    const lineTo = lineBudgetEnd(buffer, contentStart, capTo < next && lastLf >= contentStart ? lastLf + 1 : capTo, lines);
    let keepTo = base64Seen ? padBudgetEnd(buffer, contentStart, lineTo, lines) : lineTo;
    if (nestedHeader && keepTo < next) keepTo = keepNestedHeader(buffer, contentStart, next, keepTo, lines);
    if (keepTo < next) cut = true;
    slices.push(raw.subarray(spanStart, Math.max(spanStart, keepTo)));
    if (next >= end) break;
    spanStart = next;
    searchFrom = next;
    let base64: boolean;
    ({ contentStart, kind, base64, nestedHeader } = spanAt(buffer, next, end));
    base64Seen ||= base64;
  }
  return cut ? slices : [raw.subarray(bodyStart, end)];
}

/** The span starting at `start` (a "--" line, then, if it is a boundary, the part's header lines): where its content starts and what it is. */
function spanAt(buffer: Buffer, start: number, end: number): { contentStart: number; kind: Kind; quotedPrintable: boolean; base64: boolean; nestedHeader: boolean } {
  const lineEnd = buffer.indexOf(0x0a, start);
  const headersFrom = lineEnd < 0 || lineEnd >= end ? end : lineEnd + 1;
  const nextDashes = buffer.indexOf("\n--", headersFrom - 1);
  const spanEnd = nextDashes < 0 || nextDashes >= end ? end : nextDashes + 1;
  const headersTo = headerEnd(buffer, headersFrom, Math.min(spanEnd, headersFrom + PART_HEADER_SCAN_BYTES));
  if (headersTo < 0) {
    // Header lines not ended within the scan window may go on to declare base64 past it.
    const base64 = spanEnd > headersFrom + PART_HEADER_SCAN_BYTES || partHeader(buffer, headersFrom, spanEnd).base64;
    return { contentStart: headersFrom, kind: "text", quotedPrintable: false, base64, nestedHeader: false };
  }
  const header = partHeader(buffer, headersFrom, headersTo);
  // An attached message as it is (not transfer-encoded): its header block is kept past a budget.
  return { contentStart: headersTo, kind: kindOf(header.type), quotedPrintable: header.quotedPrintable, base64: header.base64, nestedHeader: isMessage(header.type) && !header.encoded };
}

/** A ContentBudget that also bounds the lines starting with "--" (each one a span to walk in budgetEnd). */
export interface WholePartsBudget extends ContentBudget {
  spansLeft: number;
  /** Set when content was cut because `spansLeft` ran out. */
  spansCut: boolean;
}

/**
 * For a parse that must see whole parts (the webhook's payload, whose text and attachment sizes
 * are the message's own: no byte caps): the end of the longest prefix of the body
 * [bodyStart, end) that fits the budget, at a line start (`end` when all of it does). Every line
 * counts, "--" and part header lines too (postal-mime's cost is per line), as do the lines
 * starting with "--" (`spansLeft`: the walk below costs per span) and the padded base64 units:
 * outside quoted-printable content, and in all of it from the first part header that may declare
 * base64 on (as in cutLeafContents: fake quoted-printable part headers inside a base64 part
 * escaped the count, 18 MB of them took the delivery thread 5-7 s). `partsCounted`: the padded units past the first span were
 * counted already, by the walk of the message that holds this one as it is (a 7bit forward: that
 * walk read the same "--" lines, part headers and contents), so they count once, not at each
 * level; the first span (this message's own body) counts still, as that walk may have read it as
 * quoted-printable. Linear in the prefix; never throws.
 */
export function budgetEnd(raw: Uint8Array, bodyStart: number, end: number, topContentType: string | null, budget: WholePartsBudget, topQuotedPrintable = false, partsCounted = false): number {
  const buffer = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  // As in cutLeafContents: a leaf at the top is one part, its "--" lines are content.
  const topIsLeaf = kindOf(topContentType) !== "container";
  let spanStart = bodyStart;
  let contentStart = bodyStart;
  let quotedPrintable = topQuotedPrintable;
  let base64Seen = false;
  let searchFrom = Math.max(0, bodyStart - 1);
  for (let first = true; ; first = false) {
    let next = topIsLeaf ? -1 : buffer.indexOf("\n--", searchFrom);
    next = next < 0 || next >= end ? end : next + 1;
    const lineTo = lineBudgetEnd(buffer, spanStart, next, budget);
    const keepTo = (quotedPrintable && !base64Seen) || (partsCounted && !first) ? lineTo : padBudgetEnd(buffer, contentStart, lineTo, budget);
    if (keepTo < next || next >= end) return keepTo;
    if (budget.spansLeft <= 0) {
      budget.spansCut = true;
      return next;
    }
    budget.spansLeft--;
    spanStart = next;
    searchFrom = next;
    let base64: boolean;
    ({ contentStart, quotedPrintable, base64 } = spanAt(buffer, next, end));
    base64Seen ||= base64;
  }
}
