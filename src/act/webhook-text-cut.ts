/**
 * Big text left out of the webhook's postal-mime parse and put back into its `text` / `html`
 * afterwards. postal-mime holds a text part as a view per line, a Blob, an ArrayBuffer copy and
 * the decoded string: a post of 24 MB of text grew serve by ~300 MB, most of it in the parse.
 *
 * In a UTF-8 text/plain or text/html leaf in 8bit or quoted-printable (its header says so; no
 * base64, no format=flowed), runs of whole lines are replaced by one marker line each. A run
 * never holds a line starting with "--" (no boundary can be hidden in it), nor its leaf's first
 * or last line (where a decoder's start and postal-mime's handling of the part's end apply).
 * What the run decodes to is known without postal-mime: each line, trailing CRs dropped (and
 * quoted-printable decoded as postal-mime does), UTF-8 decoded, and a "\n" unless a soft break
 * — as long as the node postal-mime put the marker in decodes it that way. The marker line
 * proves that: besides a random nonce and the run's number it holds "é" in UTF-8 (another
 * charset would change it), "=3D" (which comes out as "=" from quoted-printable only) and a
 * trailing space (format=flowed would join the next line to it), and base64 would garble it
 * all. So the run is put back only where its marker is found, unchanged, exactly once in
 * `text` and `html` together; otherwise the caller parses the whole message. Linear; never throws.
 */
import { randomBytes } from "node:crypto";
import type { Email } from "postal-mime";
import { hexValue } from "../parse/encoded-words.ts";

/** Runs shorter than this are left in: the parse of a small text costs little. */
export const MIN_TEXT_CUT_BYTES = 256 * 1024;

export interface TextRun {
  from: number;
  to: number;
  /** The leaf is quoted-printable (else 7bit/8bit/binary). */
  quotedPrintable: boolean;
}

/** The marker line of run `index` as it is put into the body (its bytes end with " \r\n"). */
export function textMarkerLine(nonce: string, index: number): Buffer {
  return Buffer.from(`${markerStart(nonce, index)}é=3D \r\n`, "utf8");
}

/** The marker as a text node of the run's encoding holds it once decoded: the line without its CR, and "\n". */
function decodedMarker(nonce: string, index: number, quotedPrintable: boolean): string {
  return `${markerStart(nonce, index)}é${quotedPrintable ? "=" : "=3D"} \n`;
}

/** What any form of marker `index` starts with. */
function markerStart(nonce: string, index: number): string {
  return `T${nonce}-${index}-`;
}

export function newTextNonce(): string {
  return randomBytes(12).toString("hex");
}

/**
 * How a leaf with these header lines (latin1; `topLevel`: no Content-Type means text/plain) is
 * encoded when it is UTF-8 text/plain or text/html without format=flowed: "8bit" (7bit, 8bit,
 * binary) or "quoted-printable"; null for anything else.
 */
export function utf8TextEncoding(header: string, topLevel: boolean): "8bit" | "quoted-printable" | null {
  const types = [...header.matchAll(/^content-type:[ \t]*((?:[^\r\n]|\r?\n[ \t])*)/gim)];
  if (types.length > 1 || (types.length === 0 && !topLevel)) return null;
  const value = (types[0]?.[1] ?? "text/plain").replace(/\r?\n/g, "");
  const type = /^\s*([^\s;]+)/.exec(value)?.[1]?.toLowerCase();
  if (type !== "text/plain" && type !== "text/html") return null;
  if (/charset\s*\*|;\s*format\s*=/i.test(value)) return null;
  const charset = (/;\s*charset\s*=\s*"?([^";\s]*)/i.exec(value)?.[1] ?? "utf-8").toLowerCase();
  if (charset !== "utf-8" && charset !== "utf8") return null;
  const encodings = [...header.matchAll(/^content-transfer-encoding:[ \t]*([^\r\n]*)/gim)];
  if (encodings.length > 1) return null;
  const encoding = (encodings[0]?.[1] ?? "7bit").trim().replace(/^"|"$/g, "").toLowerCase();
  if (encoding === "quoted-printable") return "quoted-printable";
  return encoding === "7bit" || encoding === "8bit" || encoding === "binary" ? "8bit" : null;
}

/**
 * Calls `cut` for each run of at least `minBytes` of whole lines in the content [from, to) of a
 * text leaf, as the header comment says. In quoted-printable, a run also starts and ends at hard
 * line breaks (no "=" ends the line before it or its own last line), so no decoded character
 * spans its edges.
 */
export function textRuns(buffer: Buffer, from: number, to: number, quotedPrintable: boolean, minBytes: number, cut: (run: TextRun) => void): void {
  const firstLf = buffer.indexOf(0x0a, from);
  if (firstLf < 0 || firstLf + 2 > to) return;
  // The start of the leaf's last line (an LF ends the line before it): runs stop there.
  const lastLineStart = buffer.lastIndexOf(0x0a, to - 2) + 1;
  /** Whether the line ending with the LF at `lf` ends with "=" (trailing CRs aside). */
  const soft = (lf: number): boolean => {
    let end = lf;
    while (end > 0 && buffer[end - 1] === 0x0d) end--;
    return buffer[end - 1] === 0x3d;
  };
  let runStart = quotedPrintable && soft(firstLf) ? -1 : firstLf + 1;
  // The end of the run's last line that a run may end after (a hard break in quoted-printable).
  let runEnd = runStart;
  const close = () => {
    if (runStart >= 0 && runEnd > runStart && runEnd - runStart >= minBytes) cut({ from: runStart, to: runEnd, quotedPrintable });
  };
  let line = firstLf + 1;
  while (line < lastLineStart) {
    const lf = buffer.indexOf(0x0a, line);
    // A "--" line, or a BOM at a run's start (the decoder would drop it), is left in.
    const dashes = buffer[line] === 0x2d && buffer[line + 1] === 0x2d;
    const bom = line === runStart && buffer[line] === 0xef && buffer[line + 1] === 0xbb && buffer[line + 2] === 0xbf;
    const hard = !quotedPrintable || !soft(lf);
    if (dashes || bom || runStart < 0) {
      close();
      // The next run starts after this line, if it ends with a hard break (-1: none open).
      runStart = runEnd = hard ? lf + 1 : -1;
    } else if (hard) runEnd = lf + 1;
    line = lf + 1;
  }
  close();
}

/** `text` and `html` with each run put back in place of its marker; null when a marker is not found exactly once. */
export function restoredTexts(email: Email, raw: Uint8Array, nonce: string, runs: TextRun[]): { text: string | undefined; html: string | undefined } | null {
  const inText: number[] = [];
  const inHtml: number[] = [];
  for (const [index, run] of runs.entries()) {
    // Its start alone is counted too: postal-mime's html made from a text node (textToHtml) holds
    // the marker changed, and that copy must not be left in.
    const start = markerStart(nonce, index);
    if (occurrences(email.text, start) + occurrences(email.html, start) !== 1) return null;
    const marker = decodedMarker(nonce, index, run.quotedPrintable);
    const t = occurrences(email.text, marker);
    const h = occurrences(email.html, marker);
    if (t + h !== 1) return null;
    (t === 1 ? inText : inHtml).push(index);
  }
  const text = restore(email.text, inText, raw, nonce, runs);
  const html = restore(email.html, inHtml, raw, nonce, runs);
  return text === null || html === null ? null : { text, html };
}

/** A lone surrogate: such a string would not survive the round trip through UTF-8 below. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * `value` with the markers of `indexes` replaced by their runs, decoded as postal-mime decodes a
 * text node: each line without its trailing CRs, UTF-8, a "\n". Built as the UTF-8 bytes of the
 * whole result and decoded once (the pieces meet at line ends, so no character spans two): a
 * 24 MB text costs one byte copy and the string, not a string per step of its assembly.
 */
function restore(value: string | undefined, indexes: number[], raw: Uint8Array, nonce: string, runs: TextRun[]): string | undefined | null {
  if (value === undefined || indexes.length === 0) return value;
  if (LONE_SURROGATE.test(value)) return null;
  const found = indexes.map((index) => ({ index, at: value.indexOf(decodedMarker(nonce, index, runs[index]!.quotedPrintable)) })).sort((a, b) => a.at - b.at);
  const runBytes = found.reduce((n, { index }) => n + runs[index]!.to - runs[index]!.from, 0);
  const out = Buffer.allocUnsafe(Buffer.byteLength(value) + runBytes);
  let o = 0;
  let from = 0;
  for (const { index, at } of found) {
    o += out.write(value.slice(from, at), o);
    const run = runs[index]!;
    o = (run.quotedPrintable ? decodeQuotedPrintableLines : copyWithoutCrBeforeLf)(raw.subarray(run.from, run.to), out, o);
    from = at + decodedMarker(nonce, index, run.quotedPrintable).length;
  }
  o += out.write(value.slice(from), o);
  return new TextDecoder("utf-8", { ignoreBOM: true }).decode(out.subarray(0, o));
}

/** Copies `bytes` into `out` at `o` without the CRs that end a line (before an LF), as postal-mime's line reader drops them; returns the end. */
function copyWithoutCrBeforeLf(bytes: Uint8Array, out: Uint8Array, o: number): number {
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] !== 0x0d) {
      out[o++] = bytes[i]!;
      continue;
    }
    let end = i;
    while (end < bytes.length && bytes[end] === 0x0d) end++;
    if (end >= bytes.length || bytes[end] !== 0x0a) for (let k = i; k < end; k++) out[o++] = 0x0d;
    i = end - 1;
  }
  return o;
}

/**
 * Whole lines of quoted-printable into `out` at `o` as postal-mime's decoder writes them: per line
 * (trailing CRs dropped), a final "=" is a soft break (no "\n"), "=XY" with two hex digits
 * inside the line is a byte, anything else is literal; returns the end.
 */
function decodeQuotedPrintableLines(bytes: Uint8Array, out: Uint8Array, o: number): number {
  for (let line = 0; line < bytes.length; ) {
    let lf = bytes.indexOf(0x0a, line);
    if (lf < 0) lf = bytes.length;
    let end = lf;
    while (end > line && bytes[end - 1] === 0x0d) end--;
    const softBreak = end > line && bytes[end - 1] === 0x3d;
    if (softBreak) end--;
    for (let i = line; i < end; i++) {
      const high = bytes[i] === 0x3d && i + 2 < end ? hexValue(bytes[i + 1]!) : -1;
      const low = high >= 0 ? hexValue(bytes[i + 2]!) : -1;
      if (low >= 0) {
        out[o++] = (high << 4) | low;
        i += 2;
      } else out[o++] = bytes[i]!;
    }
    if (!softBreak) out[o++] = 0x0a;
    line = lf + 1;
  }
  return o;
}

function occurrences(value: string | undefined, marker: string): number {
  if (value === undefined) return 0;
  let n = 0;
  for (let at = value.indexOf(marker); at >= 0 && n < 2; at = value.indexOf(marker, at + 1)) n++;
  return n;
}
