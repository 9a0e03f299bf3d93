/**
 * The header of a message forwarded inline (message/rfc822) read both ways in the webhook's
 * parse (part-names.ts collectSubMessage), as the rules read it (extract.ts contentFacts,
 * header-readings.ts). postal-mime parses a forward's header as Thunderbird does: a line of only
 * spaces folded in, a line that starts no field dropped, and so is every line after it to the
 * empty line. Python ends the header at either, and shows those lines as the forward's text, and
 * so do the rules in a second reading: in a multipart forward, `Please send the wire transfer
 * today` on a header line of its own was in the rules' `body` and not in the post's `text`. (In
 * a forward that is one text part, postal-mime's parse shows them already: part-names.ts
 * textPastHeader, which this does for the other forwards.)
 *
 * Those lines are given as text, not parsed again as a message: a second parse of the forward at
 * each of the payload's three levels took 2.4 s for a 20 MB line (the payload's budget counts lines,
 * and the parses doubled at each level); these lines are bounded by the header block limits.
 * Pure; linear; never throws.
 */
import { splitHeaderBlock } from "./header-block.ts";
import { foldedReading, nonFieldReading, sameMimeParse } from "./header-readings.ts";

const UTF8 = new TextDecoder("utf-8");

/**
 * The header lines of the message that postal-mime drops and the rules read as its text (the
 * readings extract.ts parses for a nested message besides postal-mime's), as postal-mime reads a
 * header line (UTF-8); null when there are none. From a line that starts no field, and after a
 * line of only spaces, to the empty line.
 */
export function droppedHeaderText(raw: Uint8Array): string | null {
  const block = splitHeaderBlock(raw);
  const folded = foldedReading(raw, block);
  const cut = nonFieldReading(block);
  const spans: [number, number][] = [];
  if (cut && !sameMimeParse(raw, cut, block)) spans.push([cut.bodyStart, block.bodyStart]);
  if (folded && !sameMimeParse(raw, block, folded)) spans.push([block.bodyStart, folded.bodyStart]);
  const text = spans
    .map(([from, to]) => UTF8.decode(raw.subarray(from, to)).replace(/\r\n?/g, "\n").trim())
    .filter((lines) => lines !== "")
    .join("\n");
  return text === "" ? null : text;
}
