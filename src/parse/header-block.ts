/**
 * Splits the top-level header block of a raw message into fields, before (and instead of)
 * postal-mime, so that header-borne traps never reach a parser with super-linear parts.
 * Lines are split on LF (a CR before it is dropped), a line of nothing but CRs ends the
 * block, like postal-mime, and so does a line of only spaces or tabs followed by text (see
 * headerGoesOn; `blankLinesFold` reads on past it, the other way mail clients read it).
 * Bounded by MAX_HEADER_BLOCK_BYTES, MAX_HEADER_FIELDS and
 * MAX_HEADER_FIELD_BYTES; what a limit cut off is named in `notes`. Never throws.
 */
import { MAX_HEADER_BLOCK_BYTES, MAX_HEADER_FIELD_BYTES, MAX_HEADER_FIELDS, MAX_NAMED_FIELDS_PAST_LIMIT } from "./limits.ts";

/** Fields the facts (subject, from, to, cc) and the MIME parse read by name: kept past MAX_HEADER_FIELDS. */
const KEPT_PAST_LIMIT: ReadonlySet<string> = new Set(["subject", "from", "to", "cc", "content-type", "content-transfer-encoding", "mime-version"]);

export interface RawHeaderField {
  /** Lower-case field name. */
  name: string;
  /** Name as written. */
  originalName: string;
  /** Value bytes, unfolded (line breaks removed, folding whitespace kept), not trimmed. */
  value: Uint8Array;
}

export interface HeaderBlock {
  fields: RawHeaderField[];
  /** Offset of the first body byte (raw length when the message has no body). */
  bodyStart: number;
  /** Limits that were hit, one short sentence each. */
  notes: string[];
  /**
   * True when the block ended at a line of only spaces or tabs followed by text (headerGoesOn),
   * not at an empty line: mail clients differ there (Python shows what follows as the body,
   * Thunderbird and postal-mime read on to the empty line, taking the fields they find), so
   * the rules read both (extract.ts; `splitHeaderBlock(raw, { blankLinesFold: true })`).
   */
  endedAtBlankLine: boolean;
  /**
   * The first line of the block that starts no field for Python's email package or for Postfix
   * (startsField: `Please send the wire transfer`, `Subject : x`), or null. Read on past it here
   * (as Thunderbird and postal-mime do); Python ends the header there and shows it and what
   * follows as the body, and so does Postfix (its cleanup puts an empty line before a line that
   * is no field, and a relay passes that on): header-readings.ts reads the block that way too.
   * `fields`: how many fields precede it.
   */
  nonFieldLine: { at: number; fields: number } | null;
}

export interface SplitOptions {
  /** Lines of only spaces or tabs always fold (the other reading; see endedAtBlankLine). */
  blankLinesFold?: boolean;
}

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const TAB = 0x09;
const COLON = 0x3a;

/** Field-name characters (RFC 5322 ftext: printable ASCII except ':'). */
function isFieldName(bytes: Uint8Array): boolean {
  if (bytes.length === 0) return false;
  for (const byte of bytes) if (byte < 33 || byte > 126 || byte === COLON) return false;
  return true;
}

/** End of line content: LF position minus trailing CRs. */
function contentEnd(raw: Uint8Array, start: number, lineEnd: number): number {
  let end = lineEnd;
  while (end > start && raw[end - 1] === CR) end--;
  return end;
}

/** Whether raw[start, end) is nothing but spaces and tabs. */
function isBlank(raw: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (raw[i] !== SP && raw[i] !== TAB) return false;
  return true;
}

/**
 * After a line of only spaces or tabs: whether the header block goes on at `next` (a folded
 * line, a `Name:` field line, or the empty line that ends it). A whitespace line followed by
 * text is where a sender meant the empty line: mail clients (and Python's parser) show what
 * follows as the body. Taken as folding, the body became junk header lines and `body` rules
 * saw nothing (a real Gmail-delivered message in the corpus; an easy way past body rules).
 * A whitespace line followed by header fields (several corpus messages start with one) stays
 * folding, as before.
 */
function headerGoesOn(buffer: Buffer, next: number): boolean {
  if (next >= buffer.length) return false;
  const first = buffer[next];
  if (first === SP || first === TAB || first === CR || first === LF) return true;
  let i = next;
  while (i < buffer.length && (buffer[i] as number) > 32 && (buffer[i] as number) < 127 && buffer[i] !== COLON) i++;
  if (i === next) return false;
  while (i < buffer.length && (buffer[i] === SP || buffer[i] === TAB)) i++;
  return buffer[i] === COLON;
}

const MBOX_FROM = Buffer.from("From ");

/**
 * Whether a line that is no continuation starts a field for Python's email package and for
 * Postfix (is_header) alike: a name of printable ASCII other than ':' and then ':' on the same
 * line, or an mbox `From ` line, which Python reads as part of the header (and `mailgw test` drops
 * when it comes first). A space before the colon (RFC 5322's obsolete syntax, a field to Postfix,
 * Thunderbird and here) ends Python's header: its text is body text there.
 */
function startsField(raw: Uint8Array, start: number, end: number): boolean {
  if (end - start >= MBOX_FROM.length && MBOX_FROM.equals(raw.subarray(start, start + MBOX_FROM.length))) return true;
  let i = start;
  while (i < end && (raw[i] as number) > 32 && (raw[i] as number) < 127 && raw[i] !== COLON) i++;
  return i > start && i < end && raw[i] === COLON;
}

/** Body start for a header block too long to walk line by line: first empty line. */
function findBlankLine(buffer: Buffer, from: number): number {
  const candidates = [buffer.indexOf("\n\n", from), buffer.indexOf("\n\r\n", from)].filter((i) => i >= 0);
  if (candidates.length === 0) return buffer.length;
  const at = Math.min(...candidates);
  return buffer.indexOf(LF, at + 1) + 1;
}

/**
 * Gathers one field's lines (first line + continuations, capped), then splits name and
 * value after unfolding, as RFC 5322 says: `From\r\n : <a@b>` is a From field.
 */
class FieldCollector {
  fields: RawHeaderField[] = [];
  notes: string[] = [];
  private segments: Uint8Array[] = [];
  private bytes = 0;
  private cut = false;

  /** A line that does not start with whitespace: a new field. */
  start(line: Uint8Array): void {
    this.finish();
    this.append(line);
  }

  /** A line that starts with whitespace: continues the field (or starts one, if none is open). */
  append(line: Uint8Array): void {
    if (this.cut) return;
    const room = MAX_HEADER_FIELD_BYTES - this.bytes;
    if (line.length > room) {
      this.cut = true;
      this.note(`header field longer than ${MAX_HEADER_FIELD_BYTES} bytes, truncated`);
    }
    const kept = line.subarray(0, Math.max(0, room));
    this.segments.push(kept);
    this.bytes += kept.length;
  }

  finish(): void {
    const unfolded = Buffer.concat(this.segments);
    this.segments = [];
    this.bytes = 0;
    this.cut = false;
    const colon = unfolded.indexOf(COLON);
    if (colon < 0) return;
    let nameStart = 0;
    let nameEnd = colon;
    while (nameStart < nameEnd && (unfolded[nameStart] === SP || unfolded[nameStart] === TAB)) nameStart++;
    while (nameEnd > nameStart && (unfolded[nameEnd - 1] === SP || unfolded[nameEnd - 1] === TAB)) nameEnd--;
    const nameBytes = unfolded.subarray(nameStart, nameEnd);
    if (!isFieldName(nameBytes)) return;
    const originalName = nameBytes.toString("latin1");
    const name = originalName.toLowerCase();
    if (this.fields.length >= MAX_HEADER_FIELDS) {
      this.note(`more than ${MAX_HEADER_FIELDS} header fields, the rest ignored but for ${[...KEPT_PAST_LIMIT].join(", ")}`);
      if (!KEPT_PAST_LIMIT.has(name) || this.fields.length >= MAX_HEADER_FIELDS + MAX_NAMED_FIELDS_PAST_LIMIT) return;
    }
    this.fields.push({ name, originalName, value: unfolded.subarray(colon + 1) });
  }

  note(text: string): void {
    if (!this.notes.includes(text)) this.notes.push(text);
  }
}

/** Splits the header block at the start of `raw`. */
export function splitHeaderBlock(raw: Uint8Array, opts: SplitOptions = {}): HeaderBlock {
  const buffer = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  const collector = new FieldCollector();
  let pos = 0;
  let bodyStart = raw.length;
  let endedAtBlankLine = false;
  let nonFieldLine: HeaderBlock["nonFieldLine"] = null;
  while (pos < raw.length) {
    const lf = buffer.indexOf(LF, pos);
    const lineEnd = lf < 0 ? raw.length : lf;
    const next = lf < 0 ? raw.length : lf + 1;
    const end = contentEnd(raw, pos, lineEnd);
    if (end === pos) {
      bodyStart = next;
      break;
    }
    if (!opts.blankLinesFold && isBlank(raw, pos, end) && !headerGoesOn(buffer, next)) {
      bodyStart = next;
      endedAtBlankLine = true;
      break;
    }
    // Checked after the blank line: a block that ends exactly at the cap lost nothing.
    if (pos >= MAX_HEADER_BLOCK_BYTES) {
      collector.note(`header block longer than ${MAX_HEADER_BLOCK_BYTES} bytes, the rest ignored`);
      bodyStart = findBlankLine(buffer, pos - 1);
      break;
    }
    const first = raw[pos];
    if (first === SP || first === TAB) collector.append(raw.subarray(pos, end));
    else {
      if (nonFieldLine === null && !startsField(raw, pos, end)) {
        collector.finish();
        nonFieldLine = { at: pos, fields: collector.fields.length };
      }
      collector.start(raw.subarray(pos, end));
    }
    pos = next;
  }
  collector.finish();
  return { fields: collector.fields, bodyStart, notes: collector.notes, endedAtBlankLine, nonFieldLine };
}
