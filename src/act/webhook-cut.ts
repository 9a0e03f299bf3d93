/**
 * Attachment contents (and big 8-bit text: webhook-text-cut.ts) left out of the webhook's
 * postal-mime parse, with their decoded sizes still exact. postal-mime decodes every attachment (line strings, chunks, a Blob, an
 * ArrayBuffer: ~7× an 18 MB attachment) only for the payload to take its byte length.
 *
 * In the content of a non-text leaf part (parse/leaf-cut.ts's span walk: every "--" line and
 * part header is kept), each run of at least MIN_CUT_BYTES of "clean" lines — only base64
 * alphabet characters, no '=', a multiple of 4 of them in the run — is replaced by one marker
 * line of the same kind. Such a run decodes to a size known without its context, whichever
 * decoder postal-mime picks for the part: base64 gives 3 bytes per 4 characters and does not
 * move the alignment of what follows (no '=' ends a unit there); quoted-printable and
 * 7bit/8bit/binary give each line and a "\n". So an attachment's size is its parsed size, minus what the
 * marker decoded to, plus what the run would have.
 *
 * The marker (a random nonce and the run's number) is found in the decoded attachment as
 * text, or as base64-decoded bytes at any of the 4 alignments a base64 unit can be at. Which
 * part postal-mime took a run to be is thus read from its own result, not guessed: the sizes
 * are returned only when every marker is found exactly once, in an attachment whose content
 * is the decoded bytes (not text/calendar or application/ics, which postal-mime re-encodes);
 * otherwise (a marker in a text part, a preamble, a header) null, and the caller parses the
 * whole message. Linear in the body size; never throws.
 */
import { randomBytes } from "node:crypto";
import type { Attachment } from "postal-mime";
import { decodedSize } from "../parse/line-ends.ts";
import type { NamedAttachment } from "../parse/part-names.ts";
import { headerEnd, kindOf, PART_HEADER_SCAN_BYTES, partHeader } from "../parse/leaf-cut.ts";
import { MIN_TEXT_CUT_BYTES, newTextNonce, textMarkerLine, textRuns, utf8TextEncoding, type TextRun } from "./webhook-text-cut.ts";

/** Clean-line runs shorter than this are left in (a marker saves nothing on small parts). */
export const MIN_CUT_BYTES = 64 * 1024;

/** The base64 alphabet without '=' (a '=' ends a base64 unit, which would make sizes depend on context). */
const CLEAN = new Uint8Array(256);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") CLEAN[c.charCodeAt(0)] = 1;

interface Run {
  /** Decoded bytes of the run as base64. */
  base64Bytes: number;
  /** Decoded bytes as quoted-printable or 7bit/8bit/binary, as postal-mime writes them: each line and a "\n". */
  textBytes: number;
  /** Its lines (each a line break postal-mime wrote as "\n", a CRLF in the message). */
  lines: number;
}

export interface ContentCut {
  /** The body with the runs replaced by marker lines (slices of the raw message and markers). */
  body: Uint8Array[];
  runs: Run[];
  nonce: string;
  /** Runs of text leaves (webhook-text-cut.ts), in order, with their markers' nonce. */
  texts: TextRun[];
  textNonce: string;
}

/** The top-level part: its type and its Content-* header lines (latin1). */
export interface TopPart {
  type: string | null;
  header: string;
}

/** 24 characters of nonce, then the run number in 4 characters and "AAAA": 32, a multiple of 4. */
function marker(nonce: string, run: number): string {
  const index = Buffer.alloc(6);
  index.writeUIntBE(run, 0, 3);
  return `${nonce}${index.toString("base64")}`;
}

/**
 * The body [bodyStart, end) with long clean runs of non-text leaf contents and long runs of
 * 8-bit UTF-8 text leaves replaced by markers; null when there are none.
 */
export function cutContents(raw: Uint8Array, bodyStart: number, end: number, top: TopPart, minBytes = { attachment: MIN_CUT_BYTES, text: MIN_TEXT_CUT_BYTES }): ContentCut | null {
  const buffer = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  const nonce = randomBytes(18).toString("base64");
  const textNonce = newTextNonce();
  const body: Uint8Array[] = [];
  const runs: Run[] = [];
  const texts: TextRun[] = [];
  let keptFrom = bodyStart;
  const cutRun = (from: number, to: number, chars: number, lines: number) => {
    body.push(raw.subarray(keptFrom, from), Buffer.from(`${marker(nonce, runs.length)}\r\n`, "latin1"));
    runs.push({ base64Bytes: (chars / 4) * 3, textBytes: chars + lines, lines });
    keptFrom = to;
  };
  const cutText = (run: TextRun) => {
    body.push(raw.subarray(keptFrom, run.from), textMarkerLine(textNonce, texts.length));
    texts.push(run);
    keptFrom = run.to;
  };
  const topKind = kindOf(top.type);
  if (topKind === "other") cleanRuns(buffer, bodyStart, end, minBytes.attachment, cutRun);
  else if (topKind === "text") {
    const encoding = utf8TextEncoding(top.header, true);
    if (encoding) textRuns(buffer, bodyStart, end, encoding === "quoted-printable", minBytes.text, cutText);
  }
  else if (topKind === "container") {
    // The spans of leaf-cut.ts: from each line starting with "--" to the next one.
    for (let at = buffer.indexOf("\n--", Math.max(0, bodyStart - 1)); at >= 0 && at + 1 < end; ) {
      const lineEnd = buffer.indexOf(0x0a, at + 1);
      const headersFrom = lineEnd < 0 || lineEnd >= end ? end : lineEnd + 1;
      const next = buffer.indexOf("\n--", headersFrom - 1);
      const spanEnd = next < 0 || next >= end ? end : next + 1;
      const headersTo = headerEnd(buffer, headersFrom, Math.min(spanEnd, headersFrom + PART_HEADER_SCAN_BYTES));
      const kind = headersTo >= 0 ? kindOf(partHeader(buffer, headersFrom, headersTo).type) : null;
      if (kind === "other") cleanRuns(buffer, headersTo, spanEnd, minBytes.attachment, cutRun);
      else if (kind === "text") {
        const encoding = utf8TextEncoding(buffer.toString("latin1", headersFrom, headersTo), false);
        if (encoding) textRuns(buffer, headersTo, spanEnd, encoding === "quoted-printable", minBytes.text, cutText);
      }
      at = next < 0 || next >= end ? -1 : next;
    }
  }
  if (runs.length === 0 && texts.length === 0) return null;
  body.push(raw.subarray(keptFrom, end));
  return { body, runs, nonce, texts, textNonce };
}

/** Calls `cut` for each run of at least `minBytes` of whole clean lines (LF-ended) in [from, to) with a multiple of 4 characters. */
function cleanRuns(buffer: Buffer, from: number, to: number, minBytes: number, cut: (from: number, to: number, chars: number, lines: number) => void): void {
  let lines = 0;
  let chars = 0;
  // The run so far, up to its last line end where its characters were a multiple of 4.
  let runStart = from;
  let runEnd = from;
  let runChars = 0;
  let runLines = 0;
  const close = () => {
    if (runEnd - runStart >= minBytes) cut(runStart, runEnd, runChars, runLines);
    runStart = runEnd;
    lines = chars = runChars = runLines = 0;
  };
  for (let line = from; line < to; ) {
    const lf = buffer.indexOf(0x0a, line);
    if (lf < 0 || lf >= to) break;
    let contentEnd = lf;
    while (contentEnd > line && buffer[contentEnd - 1] === 0x0d) contentEnd--; // postal-mime drops trailing CRs
    let clean = contentEnd > line;
    for (let i = line; clean && i < contentEnd; i++) clean = CLEAN[buffer[i]!] === 1;
    if (clean) {
      if (lines === 0) runStart = runEnd = line;
      chars += contentEnd - line;
      lines++;
      if (chars % 4 === 0) {
        runEnd = lf + 1;
        runChars = chars;
        runLines = lines;
      }
    } else close();
    line = lf + 1;
  }
  close();
}

/** One way a marker shows in decoded content: the bytes before the run number, and the marker's bytes in full. */
interface MarkerForm {
  prefix: Buffer;
  /** Bytes the marker line decodes to this way (what is taken off the parsed size). */
  markerBytes: number;
  base64: boolean;
  /** The full marker bytes of each run, hex, to the run. */
  runs: Map<string, number>;
  length: number;
}

function markerForms(cut: ContentCut): MarkerForm[] {
  const markers = cut.runs.map((_, i) => marker(cut.nonce, i));
  // As text (quoted-printable, 7bit/8bit/binary): the characters and a "\n".
  const forms: MarkerForm[] = [{ prefix: Buffer.from(cut.nonce, "latin1"), markerBytes: 33, base64: false, runs: new Map(markers.map((m, i) => [Buffer.from(m, "latin1").toString("hex"), i])), length: 32 }];
  // As base64 after r characters of the unit (mod 4): the groups made of marker characters alone.
  for (let r = 0; r < 4; r++) {
    const from = (4 - r) % 4;
    const to = r === 0 ? 32 : 32 - r;
    forms.push({
      prefix: Buffer.from(cut.nonce.slice(from, r === 0 ? 24 : 24 - r), "base64"),
      markerBytes: 24,
      base64: true,
      runs: new Map(markers.map((m, i) => [Buffer.from(m.slice(from, to), "base64").toString("hex"), i])),
      length: ((to - from) / 4) * 3,
    });
  }
  return forms;
}

/** Re-encoded by postal-mime from their text, so their size is not the decoded bytes. */
const REENCODED = new Set(["text/calendar", "application/ics"]);

/**
 * The decoded size of each attachment of a parse of the cut body (line-ends.ts, when the parse
 * counted its line ends: a run found as text was its lines, not the marker's one), or null when
 * a marker is not where it can be accounted for.
 */
export function restoredSizes(attachments: NamedAttachment[], cut: ContentCut): number[] | null {
  const forms = markerForms(cut);
  const found = new Array<number>(cut.runs.length).fill(0);
  const sizes: number[] = [];
  for (const a of attachments) {
    const content = bytesOf(a.content);
    let size = typeof a.content === "string" ? a.content.length : a.content.byteLength;
    let extraLines = 0;
    for (const form of forms) {
      for (let at = content.indexOf(form.prefix); at >= 0; at = content.indexOf(form.prefix, at + 1)) {
        const run = form.runs.get(content.subarray(at, at + form.length).toString("hex"));
        if (run === undefined) continue;
        if (REENCODED.has(a.mimeType.toLowerCase())) return null;
        found[run]!++;
        size += (form.base64 ? cut.runs[run]!.base64Bytes : cut.runs[run]!.textBytes) - form.markerBytes;
        if (!form.base64) extraLines += cut.runs[run]!.lines - 1;
      }
    }
    sizes.push(decodedSize(size, a.lineEnds, extraLines));
  }
  return found.every((n) => n === 1) ? sizes : null;
}

function bytesOf(content: Attachment["content"]): Buffer {
  if (typeof content === "string") return Buffer.from(content, "utf8");
  return content instanceof ArrayBuffer ? Buffer.from(content) : Buffer.from(content.buffer, content.byteOffset, content.byteLength);
}
