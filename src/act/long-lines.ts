/**
 * Breaks the lines of a forward that are longer than SMTP allows (RFC 5321 4.5.3.1.6 and RFC 5322
 * 2.1.1: at most 998 octets before CRLF), as Postfix's SMTP client does (smtp_line_length_limit =
 * 998, "breaking line > 998 bytes with <CR><LF>SPACE"). Mail that a sender wrote with such lines
 * (one-line HTML, a long unfolded header) is taken by mailgw as Postfix takes it; sent on as it
 * is, a strict relay refuses it ("500 Line too long", "550 maximum allowed line length is 998
 * octets") and the forward fails for good after mailgw answered 250.
 *
 * Where Postfix cuts at octet 998 and inserts a space, a line is broken before its last space or
 * tab within the limit when it has one: that is RFC 5322 folding, so a header unfolds to exactly
 * what the sender wrote (a relaxed DKIM signature over it still verifies) and HTML renders the
 * same. Without one, the cut is Postfix's (CRLF SPACE after 998 octets, 997 after that), moved
 * back to the start of a UTF-8 character so no character is cut in two. A continuation line
 * never starts with '.', so dot-stuffing is unchanged. Only the copy for the relay changes: the
 * archive copy and the webhook keep the bytes as received.
 *
 * Input: CRLF line endings only (normalizeLineEndings). Never throws. Cost: a message without a
 * long line is returned itself, not copied; the scan jumps from line end to line end with
 * native lastIndexOf calls at most LINE_LIMIT bytes apart, so a 4 KB message costs a few calls
 * and 20 MB of short lines about 40,000, not one per line.
 */

/** RFC 5321 4.5.3.1.6: octets of a line of text, CRLF not counted (Postfix's smtp_line_length_limit). */
export const LINE_LIMIT = 998;

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const TAB = 0x09;
const BREAK = Buffer.from("\r\n");
const BREAK_SPACE = Buffer.from("\r\n ");

/** `raw` itself when every line is within LINE_LIMIT octets; else a copy with the long ones broken. */
export function breakLongLines(raw: Buffer): Buffer {
  const long = longLines(raw);
  if (long.length === 0) return raw;
  const parts: Buffer[] = [];
  let copied = 0;
  for (const [start, end] of long) {
    parts.push(raw.subarray(copied, start));
    breakLine(raw, start, end, parts);
    copied = end;
  }
  parts.push(raw.subarray(copied));
  return Buffer.concat(parts);
}

/** [start, end of content) of each line longer than LINE_LIMIT, in order. */
function longLines(raw: Buffer): [number, number][] {
  const found: [number, number][] = [];
  const n = raw.length;
  let p = 0;
  while (n - p > LINE_LIMIT) {
    // A line starting at p is within the limit iff its LF is at p + LINE_LIMIT + 1 or before
    // (CRLF only): every line that starts before the last LF in that window is within it too.
    const lf = raw.lastIndexOf(LF, p + LINE_LIMIT + 1);
    if (lf >= p) {
      p = lf + 1;
      continue;
    }
    const end = raw.indexOf(LF, p + LINE_LIMIT + 1);
    if (end === -1) {
      found.push([p, n]);
      break;
    }
    found.push([p, raw[end - 1] === CR ? end - 1 : end]);
    p = end + 1;
  }
  return found;
}

/** Appends raw[start, end) to `parts` as lines of at most LINE_LIMIT octets, with the breaks between them. */
function breakLine(raw: Buffer, start: number, end: number, parts: Buffer[]): void {
  let p = start;
  // Room on the current output line: a continuation that starts with an inserted space has one less.
  let room = LINE_LIMIT;
  while (end - p > room) {
    const fold = lastBlank(raw, p + 1, p + room);
    if (fold !== -1) {
      parts.push(raw.subarray(p, fold), BREAK);
      p = fold;
      room = LINE_LIMIT;
      continue;
    }
    const cut = characterStart(raw, p, p + room);
    parts.push(raw.subarray(p, cut), BREAK_SPACE);
    p = cut;
    room = LINE_LIMIT - 1;
  }
  parts.push(raw.subarray(p, end));
}

/** The last space or tab in raw[from, to], or -1: a fold there keeps the line's text as it was. */
function lastBlank(raw: Buffer, from: number, to: number): number {
  // A view of just the window: lastIndexOf on the whole message would scan back to its start
  // from every cut of a long line without a blank (quadratic on a 20 MB one-line message).
  const window = raw.subarray(from, to + 1);
  const at = Math.max(window.lastIndexOf(SP), window.lastIndexOf(TAB));
  return at === -1 ? -1 : from + at;
}

/** `cut`, moved back (at most 3 octets, not to `start`) off UTF-8 continuation bytes. */
function characterStart(raw: Buffer, start: number, cut: number): number {
  for (let at = cut, back = 0; at > start + 1 && back < 4; at--, back++) {
    if (((raw[at] as number) & 0xc0) !== 0x80) return at;
  }
  return cut;
}
