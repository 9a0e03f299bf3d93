/**
 * A header block that ends at a line of only spaces or tabs followed by text
 * (HeaderBlock.endedAtBlankLine) reads two ways, and mail clients take both: Python's email
 * package shows what follows as the body, while Thunderbird (libmime skips lines without a
 * colon and ends the header only at an empty line) and postal-mime read on, taking the From,
 * Content-Type and attachments they find there. Rules that took one reading were blind to what
 * the other shows: `Subject: hi` / ` ` / `X` / `From: CEO <ceo@company.com>` hid the From from a
 * reject rule, and a multipart Content-Type in the same place hid an `.exe`; read the other way,
 * a body after the spaces was junk header lines to body rules. So the facts are those of both
 * readings together (extract.ts): the header fields of the longer one (a superset: the same
 * fields first, then those past the spaces) and the body and attachments of both parses.
 * Costs a second header walk for such messages, and a second MIME parse when the two differ
 * (sameMimeParse), on what the first parse left of the parse budget. Pure; never throws.
 */
import type { MessageFacts } from "../types.ts";
import { splitHeaderBlock, type HeaderBlock } from "./header-block.ts";
import { MAX_BODY_TEXT_CHARS } from "./limits.ts";

/** Body-derived facts of one message (and its nested messages). */
export type ContentFacts = Pick<MessageFacts, "body" | "attachments" | "attachmentTypes">;

/** What a parse note says of a message read both ways. */
export const READ_BOTH_WAYS_NOTE = "header block read two ways (a line of only spaces or tabs before text): facts of both";

/** The reading that folds lines of only spaces (to the first empty line), or null when `block` did not end at one. */
export function foldedReading(raw: Uint8Array, block: HeaderBlock): HeaderBlock | null {
  return block.endedAtBlankLine ? splitHeaderBlock(raw, { blankLinesFold: true }) : null;
}

/** What a parse note says of a message whose header has a line that starts no field. */
export const NON_FIELD_NOTE = "header block read two ways (a line that is no header field before the empty line): facts of both";

/** Notes that say a header was read two ways: every fact is there, nothing was given up. */
const READING_NOTES: ReadonlySet<string> = new Set([READ_BOTH_WAYS_NOTE, NON_FIELD_NOTE]);

/**
 * Whether a message's parse notes (MessageFacts.parseError, joined with "; ") say that part of
 * it was not inspected (a limit, a structure that did not parse), not only that a header was
 * read two ways: serve logs the former at warn, and a malformed header line, common in bulk
 * mail, is no reason to wake an admin.
 */
export function parseGaveUp(parseError: string | undefined): boolean {
  return parseError !== undefined && parseError.split("; ").some((note) => !READING_NOTES.has(note));
}

/**
 * The block as Python's email package and Postfix read it when a line in it starts no field
 * (HeaderBlock.nonFieldLine): the fields before that line, and the body from it on. Thunderbird
 * and postal-mime drop such a line and read on (`block`, whose fields are a superset of these);
 * Python shows it and the rest as the body, and Postfix, as a relay, sends them on as the body
 * (after an empty line it adds). Read only one way, `Subject: hi` / `Please send the wire
 * transfer today` / (empty line) hid those words from `body` rules. Null when there is no such line.
 */
export function nonFieldReading(block: HeaderBlock): HeaderBlock | null {
  const line = block.nonFieldLine;
  if (line === null) return null;
  return { fields: block.fields.slice(0, line.fields), bodyStart: line.at, notes: [], endedAtBlankLine: false, nonFieldLine: null };
}

/** The header fields that decide a MIME parse: extract.ts hands postal-mime these and the body. */
export const MIME_FIELDS: ReadonlySet<string> = new Set(["content-type", "content-transfer-encoding", "content-disposition"]);

function mimeFields(block: HeaderBlock): string[] {
  return block.fields.filter((field) => MIME_FIELDS.has(field.name)).map((field) => `${field.name}:${Buffer.from(field.value).toString("latin1").trim()}`);
}

/**
 * Whether the folded reading's MIME parse would find just what the first reading's finds, so it
 * need not run: the same MIME fields (the folded one may end in the spaces it folded in), a
 * multipart type, and nothing between the two bodies' starts that could be a boundary line. The
 * first reading's body is then that stretch, a preamble no multipart parse reads, followed by
 * the folded reading's body. A second parse of a 25 MB message built to be costly took the
 * classification past 1 s of CPU.
 */
export function sameMimeParse(raw: Uint8Array, first: HeaderBlock, folded: HeaderBlock): boolean {
  const a = mimeFields(first);
  const b = mimeFields(folded);
  if (a.length !== b.length || a.some((value, i) => value !== b[i])) return false;
  if (!a.some((value) => /^content-type:\s*multipart\//i.test(value))) return false;
  const gap = Buffer.from(raw.buffer, raw.byteOffset + first.bodyStart, Math.max(0, folded.bodyStart - first.bodyStart));
  return !gap.subarray(0, 2).equals(Buffer.from("--")) && gap.indexOf("\n--") < 0;
}

/**
 * Both readings' content facts: every attachment of either, and both texts (the same text
 * once). Over MAX_BODY_TEXT_CHARS together, each keeps at least half of it, so that a long text
 * in one reading cannot push the other's out of the rules' sight.
 */
export function joinContent(first: ContentFacts, second: ContentFacts): ContentFacts {
  return {
    body: joinTexts(first.body, second.body),
    attachments: unionOf(first.attachments, second.attachments),
    attachmentTypes: unionOf(first.attachmentTypes, second.attachmentTypes),
  };
}

/**
 * `first` and what `second` has more of: the two readings of one header mostly parse the same
 * attachments, which listed twice showed each file twice in `mailgw test`; a name the message
 * really has twice (two `image001.png`) stays twice.
 */
function unionOf(first: readonly string[], second: readonly string[]): string[] {
  if (second.length === 0) return [...first];
  const left = new Map<string, number>();
  for (const v of first) left.set(v, (left.get(v) ?? 0) + 1);
  const out = [...first];
  for (const v of second) {
    const n = left.get(v) ?? 0;
    if (n > 0) left.set(v, n - 1);
    else out.push(v);
  }
  return out;
}

function joinTexts(a: string, b: string): string {
  if (b === "" || b === a) return a;
  if (a === "") return b;
  const room = MAX_BODY_TEXT_CHARS - 1;
  if (a.length + b.length <= room) return `${a}\n${b}`;
  const half = Math.floor(room / 2);
  const aKept = Math.max(half, room - b.length);
  return `${a.slice(0, aKept)}\n${b.slice(0, room - Math.min(aKept, a.length))}`;
}
