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
 * Costs a second header walk and MIME parse for such messages only. Pure; never throws.
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

/**
 * Both readings' content facts: every attachment of either, and both texts (the same text
 * once). Over MAX_BODY_TEXT_CHARS together, each keeps at least half of it, so that a long text
 * in one reading cannot push the other's out of the rules' sight.
 */
export function joinContent(first: ContentFacts, second: ContentFacts): ContentFacts {
  return {
    body: joinTexts(first.body, second.body),
    attachments: [...first.attachments, ...second.attachments],
    attachmentTypes: [...first.attachmentTypes, ...second.attachmentTypes],
  };
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
