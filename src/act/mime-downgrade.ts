/**
 * Makes an 8-bit message fit for a relay that does not offer 8BITMIME. RFC 6152 §3: 8-bit data
 * may only follow BODY=8BITMIME, and a server relaying to one that lacks it must convert the
 * message or refuse it. Sent unconverted, the bytes reach a 7-bit-only next hop as they are
 * (some strip the high bit, some refuse the message after it was delivered to us).
 *
 * What Postfix does by default (disable_mime_output_conversion = no): each MIME leaf whose
 * content holds 8-bit bytes in an identity encoding (none, 7bit, 8bit, binary) is re-encoded as
 * quoted-printable and its Content-Transfer-Encoding changed; multipart and message/rfc822
 * containers are walked, their own 8bit label becomes 7bit. A reader decodes the same text and
 * attachments as before. Content already in quoted-printable or base64 that holds stray 8-bit
 * bytes gets them escaped (=XX: decodes to the same byte) or dropped (base64 decoders skip
 * bytes outside their alphabet). A leaf with no Content-Type gets one naming its charset
 * (utf-8 when the content is valid UTF-8, else unknown-8bit, RFC 1428), a message without
 * MIME-Version gets that line: the new encoding is MIME. Preambles and epilogues, which no
 * reader shows, have their 8-bit bytes replaced by '?'.
 *
 * Left as they are, as by Postfix: 8-bit bytes in header fields (only SMTPUTF8 carries those),
 * entities nested deeper than MAX_MIME_DEPTH, uuencode. A label that is no encoding ("7-bit",
 * "plain") is read as identity, as parsers do. A DKIM signature over
 * the body no longer verifies after a conversion (as with any converting MTA).
 *
 * Input: CRLF line endings only (normalizeLineEndings). Never throws; linear in the size per level.
 */
import { isAscii, isUtf8 } from "node:buffer";
import { MAX_MIME_DEPTH } from "../parse/limits.ts";
import { parameters, parameterValues } from "../parse/mime-parameters.ts";

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const TAB = 0x09;
const EQUALS = 0x3d;
const QUESTION = 0x3f;
const DASH = 0x2d;
/** RFC 2045 6.7 (5): encoded lines at most 76 characters, the soft break's '=' included. */
const QP_LINE = 76;
/** RFC 5321 4.5.3.1.6: a line of text at most 998 bytes (before CRLF). */
const SMTP_LINE = 998;
const HEX = Buffer.from("0123456789ABCDEF");
/** Transfer encodings that are not identity; any other label is (RFC 2045 6.2's 7bit, 8bit, binary, and typos). */
const ENCODINGS_KEPT: ReadonlySet<string> = new Set(["quoted-printable", "base64", "x-uuencode", "uuencode", "x-uue"]);

/** The message with no 8-bit byte left outside header fields; `raw` itself when it has none. */
export function downgradeTo7bit(raw: Buffer): Buffer {
  if (isAscii(raw)) return raw;
  const out: Buffer[] = [];
  downgradeEntity(raw, 0, raw.length, { depth: 0, defaultType: "text/plain", root: true }, out);
  return Buffer.concat(out);
}

interface Field {
  /** Lower-case name, "" for a line that is not a field. */
  name: string;
  /** The field's bytes, continuation lines and final CRLF included. */
  start: number;
  end: number;
  /** Unfolded value, latin1. */
  value: string;
}

interface Header {
  fields: Field[];
  /** Start of the blank line that ends the header, and of the body after it. */
  blank: number;
  bodyStart: number;
}

interface Place {
  depth: number;
  /** Content-Type when the entity has none: text/plain, message/rfc822 in multipart/digest. */
  defaultType: string;
  /** A message (top level or message/rfc822 content): MIME-Version belongs in its header. */
  root: boolean;
}

/** The header at `start`, or null when no blank line ends it before `end`. */
function readHeader(buf: Buffer, start: number, end: number): Header | null {
  const fields: Field[] = [];
  let pos = start;
  while (pos < end) {
    const lf = buf.indexOf(LF, pos);
    if (lf < 0 || lf >= end) return null;
    const contentEnd = lf > pos && buf[lf - 1] === CR ? lf - 1 : lf;
    if (contentEnd === pos) return { fields, blank: pos, bodyStart: lf + 1 };
    const line = buf.toString("latin1", pos, contentEnd);
    const last = fields[fields.length - 1];
    if ((buf[pos] === SP || buf[pos] === TAB) && last) {
      last.end = lf + 1;
      last.value += line;
    } else {
      const colon = line.indexOf(":");
      fields.push({ name: colon > 0 ? line.slice(0, colon).trim().toLowerCase() : "", start: pos, end: lf + 1, value: colon > 0 ? line.slice(colon + 1) : "" });
    }
    pos = lf + 1;
  }
  return null;
}

function field(header: Header, name: string): Field | undefined {
  return header.fields.find((f) => f.name === name);
}

function mediaType(value: string): string {
  return (value.split(";")[0] ?? "").trim().toLowerCase();
}

/**
 * The multipart's boundary, as postal-mime and mail clients read it: the RFC 2231 form
 * (`boundary*=us-ascii''…`, `boundary*0=…; boundary*1=…`) over a plain one, else the first plain
 * one. Unread, such a multipart was encoded as one quoted-printable leaf, and the reader got
 * neither its text nor its attachments.
 */
function boundaryOf(value: string): string | null {
  const { plain, extended } = parameterValues(parameters(value), "boundary");
  return extended[0] || plain[0] || null;
}

function downgradeEntity(buf: Buffer, start: number, end: number, place: Place, out: Buffer[]): void {
  const whole = buf.subarray(start, end);
  const header = place.depth > MAX_MIME_DEPTH || isAscii(whole) ? null : readHeader(buf, start, end);
  if (header === null) {
    out.push(whole);
    return;
  }
  const body = buf.subarray(header.bodyStart, end);
  if (isAscii(body)) {
    out.push(whole); // 8-bit bytes in header fields only: nothing a conversion can do
    return;
  }
  const typeField = field(header, "content-type");
  const type = typeField ? mediaType(typeField.value) : place.defaultType;
  // Comments are allowed in the field (RFC 2045 6.1, RFC 822 3.4.3) and readers skip them: kept,
  // "quoted-printable (qp)" was read as no encoding and its content encoded a second time. Then,
  // as postal-mime (serve's parser) reads it, the first token: '"quoted-printable"' and
  // 'base64; x=1' are those encodings to the reader, whole they were no encoding here.
  const label = (field(header, "content-transfer-encoding")?.value ?? "").replace(/\([^()]*\)/g, " ").toLowerCase();
  const encoding = /[\w-]+/.exec(label)?.[0] ?? "";
  // Labels that are not encodings ("7-bit", "plain", "8bits") are read as identity by parsers.
  const identity = !ENCODINGS_KEPT.has(encoding);
  // A container's label: 8bit or binary no longer true once its parts are converted.
  const containerLabel = encoding === "8bit" || encoding === "binary" ? "7bit" : null;
  const boundary = type.startsWith("multipart/") && typeField ? boundaryOf(typeField.value) : null;
  if (boundary !== null) {
    pushHeader(buf, start, header, place, containerLabel, out);
    const inner = { depth: place.depth + 1, defaultType: type === "multipart/digest" ? "message/rfc822" : "text/plain", root: false };
    downgradeParts(buf, header.bodyStart, end, boundary, inner, out);
  } else if (type === "message/rfc822" && identity) {
    pushHeader(buf, start, header, place, containerLabel, out);
    downgradeEntity(buf, header.bodyStart, end, { depth: place.depth + 1, defaultType: "text/plain", root: true }, out);
  } else if (identity) {
    const charset = typeField ? null : isUtf8(body) ? "utf-8" : "unknown-8bit";
    pushHeader(buf, start, header, place, "quoted-printable", out, charset);
    out.push(encodeQuotedPrintable(body));
  } else if (encoding === "quoted-printable") {
    out.push(buf.subarray(start, header.bodyStart), escapeInQuotedPrintable(body));
  } else if (encoding === "base64") {
    out.push(buf.subarray(start, header.bodyStart), Buffer.from(body.filter((b) => b < 0x80)));
  } else {
    out.push(whole); // uuencode: left as it is
  }
}

/**
 * The header with its Content-Transfer-Encoding set to `encoding` (null: kept), a Content-Type
 * added when `charset` is given, MIME-Version added to a message that lacks it.
 */
function pushHeader(buf: Buffer, start: number, header: Header, place: Place, encoding: string | null, out: Buffer[], charset: string | null = null): void {
  let pos = start;
  if (encoding !== null) {
    for (const f of header.fields) {
      if (f.name !== "content-transfer-encoding") continue;
      out.push(buf.subarray(pos, f.start));
      pos = f.end;
    }
  }
  out.push(buf.subarray(pos, header.blank));
  const added: string[] = [];
  if (place.root && encoding !== null && !field(header, "mime-version")) added.push("MIME-Version: 1.0");
  if (charset !== null) added.push(`Content-Type: text/plain; charset=${charset}`);
  if (encoding !== null) added.push(`Content-Transfer-Encoding: ${encoding}`);
  for (const line of added) out.push(Buffer.from(`${line}\r\n`, "latin1"));
  out.push(buf.subarray(header.blank, header.bodyStart));
}

interface BoundaryLine {
  start: number;
  /** Just past its LF (or `end`). */
  lineEnd: number;
  close: boolean;
}

/** Delimiter lines of `boundary` in [from, end): "--boundary" or "--boundary--", then only whitespace. */
function boundaryLines(buf: Buffer, from: number, end: number, boundary: string): BoundaryLine[] {
  const delimiter = `--${boundary}`;
  const lines: BoundaryLine[] = [];
  for (let i = buf.indexOf(delimiter, from, "latin1"); i >= 0 && i < end; i = buf.indexOf(delimiter, i + 1, "latin1")) {
    if (i > from && buf[i - 1] !== LF) continue;
    const lf = buf.indexOf(LF, i);
    const lineEnd = lf < 0 || lf >= end ? end : lf + 1;
    const rest = buf.toString("latin1", i + delimiter.length, lineEnd);
    const close = rest.startsWith("--");
    if (!/^[ \t\r\n]*$/.test(close ? rest.slice(2) : rest)) continue;
    lines.push({ start: i, lineEnd, close });
    if (close) break;
  }
  return lines;
}

function downgradeParts(buf: Buffer, bodyStart: number, end: number, boundary: string, inner: Place, out: Buffer[]): void {
  const lines = boundaryLines(buf, bodyStart, end, boundary);
  const first = lines[0];
  if (first === undefined) {
    out.push(sevenBitText(buf.subarray(bodyStart, end)));
    return;
  }
  out.push(sevenBitText(buf.subarray(bodyStart, first.start)));
  lines.forEach((line, k) => {
    out.push(buf.subarray(line.start, line.lineEnd));
    if (line.close) {
      out.push(sevenBitText(buf.subarray(line.lineEnd, end)));
      return;
    }
    const next = lines[k + 1];
    // The CRLF before a delimiter line belongs to the delimiter (RFC 2046 5.1.1).
    const partEnd = next === undefined ? end : Math.max(line.lineEnd, next.start - 2);
    downgradeEntity(buf, line.lineEnd, partEnd, inner, out);
    if (next !== undefined) out.push(buf.subarray(partEnd, next.start));
  });
}

/** Text no reader shows (preamble, epilogue): 8-bit bytes become '?'. */
function sevenBitText(bytes: Buffer): Buffer {
  return isAscii(bytes) ? bytes : Buffer.from(bytes.map((b) => (b < 0x80 ? b : QUESTION)));
}

/** Writes =XX for `byte` at `at`; returns the new position. */
function writeEscape(to: Buffer, at: number, byte: number): number {
  to[at] = EQUALS;
  to[at + 1] = HEX[byte >> 4]!;
  to[at + 2] = HEX[byte & 15]!;
  return at + 3;
}

function writeSoftBreak(to: Buffer, at: number): number {
  to[at] = EQUALS;
  to[at + 1] = CR;
  to[at + 2] = LF;
  return at + 3;
}

/** RFC 2045 6.7 quoted-printable of CRLF-delimited content: its line breaks stay hard breaks. */
export function encodeQuotedPrintable(content: Buffer): Buffer {
  // Worst case: every byte escaped (3×), plus a soft break per 25 escapes.
  const to = Buffer.allocUnsafe(content.length * 3 + Math.ceil(content.length / 20) * 3 + 8);
  let at = 0;
  let column = 0;
  for (let i = 0; i < content.length; i++) {
    const byte = content[i]!;
    if (byte === CR && content[i + 1] === LF) {
      to[at++] = CR;
      to[at++] = LF;
      i++;
      column = 0;
      continue;
    }
    const lineEnds = i + 1 === content.length || (content[i + 1] === CR && content[i + 2] === LF);
    const literal = (byte > SP && byte < 0x7f && byte !== EQUALS) || ((byte === SP || byte === TAB) && !lineEnds);
    const width = literal ? 1 : 3;
    // Room for the token and, unless the line ends after it, a soft break's '='.
    if (column + width > (lineEnds ? QP_LINE : QP_LINE - 1)) {
      at = writeSoftBreak(to, at);
      column = 0;
      // A line a soft break starts never begins with '-': "--boundary" from the middle of a long
      // line, moved to the start of one, is a delimiter line to the reader (RFC 2046 5.1.1), who
      // saw the part end there and the rest of its text become a part of its own (an attachment
      // the sender never attached). =2D decodes to the same '-'. Lines the sender began are kept:
      // they were no delimiters.
      if (byte === DASH) {
        at = writeEscape(to, at, DASH);
        column = 3;
        continue;
      }
    }
    if (literal) to[at++] = byte;
    else at = writeEscape(to, at, byte);
    column += width;
  }
  return to.subarray(0, at);
}

/**
 * Quoted-printable content with raw 8-bit bytes: each becomes =XX, which decodes to the same
 * byte; a line that grows past SMTP's 998 bytes gets soft breaks between tokens.
 */
export function escapeInQuotedPrintable(content: Buffer): Buffer {
  const to = Buffer.allocUnsafe(content.length * 3 + Math.ceil(content.length / 300) * 3 + 8);
  let at = 0;
  let column = 0;
  for (let i = 0; i < content.length; i++) {
    const byte = content[i]!;
    // CR of the line's CRLF takes no column: counted, a soft break went between a line's own
    // soft break ('=' at its end) and its CRLF, "==" that decodes to a stray '=' and a new line.
    if (byte === LF || (byte === CR && content[i + 1] === LF)) {
      to[at++] = byte;
      if (byte === LF) column = 0;
      continue;
    }
    // An escape already there is one token: a soft break never lands inside it.
    const width = byte >= 0x80 || (byte === EQUALS && isHex(content[i + 1]) && isHex(content[i + 2])) ? 3 : 1;
    if (column + width > SMTP_LINE - 2) {
      at = writeSoftBreak(to, at);
      column = 0;
      // As in encodeQuotedPrintable: no line a soft break starts may read as a boundary.
      if (byte === DASH) {
        at = writeEscape(to, at, DASH);
        column = 3;
        continue;
      }
    }
    if (byte >= 0x80) {
      at = writeEscape(to, at, byte);
    } else {
      at += content.copy(to, at, i, i + width);
      i += width - 1;
    }
    column += width;
  }
  return to.subarray(0, at);
}

function isHex(byte: number | undefined): boolean {
  return byte !== undefined && ((byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66));
}
