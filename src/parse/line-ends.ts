/**
 * An attachment's decoded size as a MIME reader gives it (RFC 2045/2046; Python's email package,
 * Thunderbird), from postal-mime's decoded content. postal-mime's pass-through (7bit, 8bit,
 * binary) and quoted-printable decoders write every line they are fed followed by one "\n":
 * the line break that belongs to the boundary after the part (RFC 2046 5.1.1) is counted as
 * content, and every other line break, a CRLF on the wire, as one byte. So a one-line 7bit file
 * `abc` was listed as 4 bytes, a 3-line one of 19 bytes as 18.
 *
 * Here the lines fed to such a decoder are counted (a quoted-printable soft break, a line ending
 * in "=", writes no "\n"), and the size is corrected: each "\n" a line break wrote is a CRLF,
 * the last one dropped when a boundary follows it. A part's content ends at a boundary unless it
 * is the message's own single part (its last CRLF is the message's, RFC 5321 4.1.1.4); a nested
 * message's single part ends where the part holding it does, at that part's boundary.
 * Trusts nothing; a counter per line; never throws.
 */

/** The line breaks postal-mime's decoder wrote as one "\n" each, for a part not base64. */
export interface LineEnds {
  /** Lines fed whose "\n" was written (all but quoted-printable soft breaks). */
  hard: number;
  /** Whether the last line fed wrote its "\n". */
  lastHard: boolean;
  /** Whether a boundary follows the part's content (its last line break is the boundary's). */
  delimited: boolean;
}

/** What of a postal-mime part node is read and wrapped here (postal-mime 4's MimeNode). */
export interface DecodingNode {
  contentTransferEncoding: { encoding: string };
  contentDecoder?: { update(line: Uint8Array): void } | null;
  /** Set once the part's body starts: null for a base64 part (its decoder writes no line breaks). */
  lineEnds?: LineEnds | null;
}

const EQUALS = 0x3d;

/**
 * Counts the lines postal-mime feeds the node's decoder from now on; called once its body has
 * started (its decoder set up, no body line fed yet). `delimited`: see LineEnds.
 */
export function countLineEnds(node: DecodingNode, delimited: boolean): void {
  const decoder = node.contentDecoder;
  // postal-mime's choice of decoder (mime-node.ts setupContentDecoder).
  const encoding = node.contentTransferEncoding.encoding;
  if (!decoder || /base64/i.test(encoding)) {
    node.lineEnds = null;
    return;
  }
  const qp = /quoted-printable/i.test(encoding);
  const ends: LineEnds = { hard: 0, lastHard: false, delimited };
  node.lineEnds = ends;
  const update = decoder.update.bind(decoder);
  decoder.update = (line: Uint8Array) => {
    // As postal-mime's QPDecoder tells a soft break.
    const hard = !qp || line.length === 0 || line[line.length - 1] !== EQUALS;
    if (hard) ends.hard++;
    ends.lastHard = hard;
    update(line);
  };
}

/**
 * The decoded size of a part whose content postal-mime gave as `parsedBytes`; `extraHard`: hard
 * lines the parse did not see (webhook-cut.ts: a run of lines replaced by one marker line).
 * Without line ends (base64, or not counted) the parsed size is the decoded size.
 */
export function decodedSize(parsedBytes: number, ends: LineEnds | null | undefined, extraHard = 0): number {
  if (!ends) return parsedBytes;
  const hard = ends.hard + extraHard;
  return Math.max(0, parsedBytes + hard - (ends.delimited && ends.lastHard ? 2 : 0));
}
