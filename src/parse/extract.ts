/**
 * Raw message + envelope → MessageFacts (what the rules look at).
 *
 * Trusts nothing in the message. The top-level header block is split and decoded here
 * (header-block.ts, header-facts.ts: all linear; a block ended by a line of only spaces is
 * read both ways, header-readings.ts); postal-mime only sees
 * the MIME structure: the Content-* headers and the body, cut to the limits in limits.ts.
 * Attached message/rfc822 parts are parsed in turn, within a shared budget, for their
 * attachments and (when inline) their text. Any failure or limit hit yields partial facts
 * with `parseError` set; this function never throws.
 *
 * The facts are those of the message as it is forwarded: bare CRs and LFs are read as CRLF
 * (normalizeLineEndings, what the relay path sends). Read as they were, a `Subject: x<CR>
 * Content-Type: multipart/mixed…` was one Subject here but two fields at the relay, so an
 * attachment rule never saw the `.exe` the recipient got.
 */
import { normalizeLineEndings } from "../act/normalize-crlf.ts";
import { readFileBytes } from "../read-file.ts";
import type { Email } from "postal-mime";
import type { AuthResult, Envelope, MessageFacts } from "../types.ts";
import { describeError } from "../errors.ts";
import { splitHeaderBlock, type HeaderBlock, type RawHeaderField } from "./header-block.ts";
import { foldedReading, joinContent, MIME_FIELDS, NON_FIELD_NOTE, nonFieldReading, READ_BOTH_WAYS_NOTE, sameMimeParse, type ContentFacts } from "./header-readings.ts";
import { emptyHeaderFacts, headerFacts, type HeaderFacts } from "./header-facts.ts";
import { headerCharset, type HeaderCharset } from "./header-text.ts";
import { htmlToText } from "./html-text.ts";
import { cutLeafContents, transferEncoded, type ContentBudget } from "./leaf-cut.ts";
import { parseNamingParts, type NamedAttachment, type NamedEmail } from "./part-names.ts";
import {
  MAX_ATTACHMENTS, MAX_BODY_TEXT_CHARS, MAX_BOUNDARY_LINES, MAX_MIME_DEPTH,
  MAX_MIME_PART_HEADER_BYTES, MAX_NESTED_MESSAGE_DEPTH, MAX_NESTED_MESSAGES, MAX_PARSE_BYTES_TOTAL,
  MAX_BASE64_PAD_UNITS, MAX_PARSE_LINES, MAX_RETRY_BOUNDARY_LINES, MAX_RETRY_PARSE_BYTES,
} from "./limits.ts";

export interface ExtractOptions {
  /** SPF/DKIM/DMARC results from `authenticate()`; each missing one is "none". */
  auth?: Partial<Record<"spf" | "dkim" | "dmarc", AuthResult>>;
  /**
   * Parse the MIME body for `body`, `attachments` and `attachmentTypes` (default true).
   * false: header block only (those facts stay empty) — for rule sets that never read them
   * (see rules/fact-needs.ts); every other fact is the same as with a full parse.
   */
  content?: boolean;
}



/** Limits shared by a message and the messages nested in it. */
interface ParseBudget {
  bytesLeft: number;
  lines: ContentBudget;
  nestedLeft: number;
  notes: string[];
}

function note(budget: ParseBudget, text: string): void {
  if (!budget.notes.includes(text)) budget.notes.push(text);
}


/** How much of a body postal-mime may see. */
interface ParseCut {
  maxBoundaryLines: number;
  maxBytes: number;
}

const FIRST_CUT: ParseCut = { maxBoundaryLines: MAX_BOUNDARY_LINES, maxBytes: MAX_PARSE_BYTES_TOTAL };
const RETRY_CUT: ParseCut = { maxBoundaryLines: MAX_RETRY_BOUNDARY_LINES, maxBytes: MAX_RETRY_PARSE_BYTES };

/** End of the body postal-mime may see: the cut's boundary lines and bytes, and the shared byte budget. */
function parseEnd(raw: Uint8Array, bodyStart: number, cut: ParseCut, budget: ParseBudget): number {
  const buffer = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  let end = raw.length;
  let lines = buffer.indexOf("--", bodyStart) === bodyStart ? 1 : 0;
  for (let at = buffer.indexOf("\n--", bodyStart); at >= 0; at = buffer.indexOf("\n--", at + 3)) {
    if (++lines > cut.maxBoundaryLines) {
      end = at + 1;
      note(budget, `more than ${cut.maxBoundaryLines} MIME boundary lines, the rest not inspected`);
      break;
    }
  }
  if (end - bodyStart > cut.maxBytes) {
    end = bodyStart + cut.maxBytes;
    note(budget, `more than ${cut.maxBytes} bytes to parse, the rest not inspected`);
  }
  if (end - bodyStart > budget.bytesLeft) {
    end = bodyStart + budget.bytesLeft;
    note(budget, `parse budget of ${MAX_PARSE_BYTES_TOTAL} bytes used up, the rest not inspected`);
  }
  budget.bytesLeft -= end - bodyStart;
  return end;
}

/**
 * The message postal-mime parses: the top-level Content-* headers and the (cut) body, with
 * over-long leaf part contents cut (leaf-cut.ts: structure and facts kept, memory bounded).
 */
function mimeInput(raw: Uint8Array, fields: RawHeaderField[], bodyStart: number, end: number, budget: ParseBudget): Uint8Array {
  const head: Uint8Array[] = [];
  for (const field of fields) {
    if (!MIME_FIELDS.has(field.name)) continue;
    head.push(Buffer.from(`${field.originalName}:`, "latin1"), field.value, Buffer.from("\r\n"));
  }
  head.push(Buffer.from("\r\n"));
  const contentType = fields.find((field) => field.name === "content-type");
  const topType = contentType ? (/^\s*([^\s;]+)/.exec(Buffer.from(contentType.value).toString("latin1"))?.[1] ?? null) : null;
  const body = cutLeafContents(raw, bodyStart, end, topType, budget.lines, topEncoding(fields));
  if (budget.lines.cut) note(budget, `more than ${MAX_PARSE_LINES} lines to parse, the rest not inspected`);
  if (budget.lines.padsCut) note(budget, `more than ${MAX_BASE64_PAD_UNITS} padded base64 units (runs of '=') to decode, the rest not inspected`);
  return Buffer.concat([...head, ...body]);
}

/**
 * Whether the top-level body may be base64 (the word in any of its Content-* fields, as
 * leaf-cut.ts partHeader reads a part's header) and whether it is encoded at all (by its first
 * Content-Transfer-Encoding field, the one postal-mime decodes by, as partHeader reads it).
 */
function topEncoding(fields: RawHeaderField[]): { base64: boolean; encoded: boolean } {
  const mime = fields.filter((field) => MIME_FIELDS.has(field.name));
  const encoding = mime.find((field) => field.name === "content-transfer-encoding");
  return {
    base64: mime.some((field) => /base64/i.test(Buffer.from(field.value).toString("latin1"))),
    encoded: transferEncoded(encoding ? Buffer.from(encoding.value).toString("latin1") : null),
  };
}

/** postal-mime's parse of `input`; raw 8-bit part header bytes also read as `charset` says (part-header-charset.ts). */
async function parseMime(input: Uint8Array, charset: HeaderCharset): Promise<NamedEmail> {
  return parseNamingParts(input, {
    forceRfc822Attachments: true, // nested messages are parsed by contentFacts, within the budget
    maxRfc822NestingDepth: 0,
    maxNestingDepth: MAX_MIME_DEPTH,
    maxHeadersSize: MAX_MIME_PART_HEADER_BYTES,
    attachmentEncoding: "arraybuffer",
  }, null, () => charset);
}

/**
 * The text part, else the HTML as text. A text part of blank lines beside an HTML one (an
 * alternative whose plain part was left empty) is no text: the reader sees the HTML, and a
 * `body` rule must too, or a message hides its words from the rules behind an empty part.
 */
function bodyText(email: Email): string {
  const text = email.text ?? "";
  if (email.html && !/\S/.test(text)) return htmlToText(email.html, MAX_BODY_TEXT_CHARS);
  return text.slice(0, MAX_BODY_TEXT_CHARS);
}

/** One character savedName drops at the end of a name (whitespace, dot), and at its start (whitespace). */
const SAVED_NAME_TRIMMED = /^[\s.]$/u;
const LEADING_SPACE = /^\s$/u;

/**
 * An attachment's name as it is saved: Windows drops trailing spaces and dots, so `setup.exe .`
 * is setup.exe when opened, and an `attachment ends_with .exe` rule must see it that way.
 */
function savedName(filename: string): string {
  // Scanned, not `/[\s.]+$/`: that regex retries at every space of a run that does not end the
  // name, and a name of 200,000 spaces then "x.exe" took the parse worker past its 10 s timeout.
  let end = filename.length;
  while (end > 0 && SAVED_NAME_TRIMMED.test(filename[end - 1] ?? "")) end--;
  let start = 0;
  while (start < end && LEADING_SPACE.test(filename[start] ?? "")) start++;
  return filename.slice(start, end);
}

/**
 * Each distinct saved name of an attachment: postal-mime's choice first, then every other name its
 * part gives. A name with a NUL (`x.exe%00.pdf`, `=?utf-8?Q?x.exe=00.pdf?=`) is also the name before
 * it: software that keeps names as C strings, as Windows' file APIs do, saves `x.exe`.
 */
function attachmentNames(attachment: NamedAttachment): string[] {
  const names = new Set<string>();
  for (const name of [attachment.filename ?? "", ...(attachment.names ?? [])]) {
    const nul = name.indexOf("\0");
    for (const saved of nul < 0 ? [savedName(name)] : [savedName(name), savedName(name.slice(0, nul))]) {
      if (saved) names.add(saved);
    }
  }
  return [...names];
}

function isMessage(mimeType: string): boolean {
  return mimeType === "message/rfc822" || mimeType === "message/global";
}

/** What postal-mime parses for a cut (FIRST_CUT, or RETRY_CUT after a failure); uses the budget. */
type MimeInputOf = (cut: ParseCut, budget: ParseBudget) => Promise<Uint8Array>;

function mimeInputOf(raw: Uint8Array, fields: RawHeaderField[], bodyStart: number): MimeInputOf {
  return async (cut, budget) => mimeInput(raw, fields, bodyStart, parseEnd(raw, bodyStart, cut, budget), budget);
}

/** Body and attachment facts of a message (its MIME input; `charset`: how its raw 8-bit header bytes are read), nested messages included. */
async function contentFacts(inputOf: MimeInputOf, depth: number, budget: ParseBudget, charset: HeaderCharset): Promise<ContentFacts> {
  const facts: ContentFacts = { body: "", attachments: [], attachmentTypes: [] };
  let email: NamedEmail;
  try {
    email = await parseMime(await inputOf(FIRST_CUT, budget), charset);
  } catch (err) {
    note(budget, `MIME structure not parsed: ${describeError(err)}`);
    try {
      email = await parseMime(await inputOf(RETRY_CUT, budget), charset);
      note(budget, "parsed again, cut short");
    } catch {
      return facts;
    }
  }
  const bodies = [bodyText(email)];
  for (const attachment of email.attachments) {
    if (facts.attachmentTypes.length >= MAX_ATTACHMENTS) {
      note(budget, `more than ${MAX_ATTACHMENTS} attachments, the rest not listed`);
      break;
    }
    facts.attachments.push(...attachmentNames(attachment));
    facts.attachmentTypes.push(attachment.mimeType.toLowerCase());
    if (!isMessage(attachment.mimeType) || typeof attachment.content === "string") continue;
    if (depth >= MAX_NESTED_MESSAGE_DEPTH || budget.nestedLeft <= 0) {
      note(budget, `nested messages beyond ${MAX_NESTED_MESSAGES} (or ${MAX_NESTED_MESSAGE_DEPTH} deep) not inspected`);
      continue;
    }
    budget.nestedLeft--;
    const content = attachment.content;
    const nestedRaw = content instanceof ArrayBuffer ? new Uint8Array(content) : new Uint8Array(content.buffer, content.byteOffset, content.byteLength);
    const nestedBlock = splitHeaderBlock(nestedRaw);
    // Its raw 8-bit part header bytes in its own charset, as its sender wrote them.
    const nestedCharset = headerCharset(nestedBlock.fields, nestedRaw, nestedBlock.bodyStart);
    let nested = await contentFacts(mimeInputOf(nestedRaw, nestedBlock.fields, nestedBlock.bodyStart), depth + 1, budget, nestedCharset);
    // Read both ways as the top-level block is (header-readings.ts): a forwarded message whose
    // multipart Content-Type sits past a line of spaces showed its .exe in postal-mime and
    // Thunderbird and hid it from the rules. On the shared budget (bytes, lines, nested count).
    const nestedFolded = foldedReading(nestedRaw, nestedBlock);
    if (nestedFolded) note(budget, READ_BOTH_WAYS_NOTE);
    if (nestedFolded && !sameMimeParse(nestedRaw, nestedBlock, nestedFolded)) {
      nested = joinContent(nested, await contentFacts(mimeInputOf(nestedRaw, nestedFolded.fields, nestedFolded.bodyStart), depth + 1, budget, nestedCharset));
    }
    // And ended at a line that starts no field, as Python shows a forwarded message (and as the
    // top-level block is read, otherReadings): `Subject: urgent` / `Please send the wire
    // transfer today` in a forward's header hid those words from `body` rules.
    const nestedCut = nonFieldReading(nestedBlock);
    if (nestedCut && !sameMimeParse(nestedRaw, nestedCut, nestedBlock)) {
      note(budget, NON_FIELD_NOTE);
      nested = joinContent(nested, await contentFacts(mimeInputOf(nestedRaw, nestedCut.fields, nestedCut.bodyStart), depth + 1, budget, nestedCharset));
    }
    if (attachment.disposition !== "attachment" && nested.body) bodies.push(nested.body);
    facts.attachments.push(...nested.attachments);
    facts.attachmentTypes.push(...nested.attachmentTypes);
  }
  facts.body = bodies.filter((text) => text !== "").join("\n").slice(0, MAX_BODY_TEXT_CHARS);
  if (facts.body.length >= MAX_BODY_TEXT_CHARS) note(budget, `body text longer than ${MAX_BODY_TEXT_CHARS} characters, truncated`);
  return facts;
}


function newBudget(): ParseBudget {
  return { bytesLeft: MAX_PARSE_BYTES_TOTAL, lines: { left: MAX_PARSE_LINES, cut: false, padsLeft: MAX_BASE64_PAD_UNITS, padsCut: false }, nestedLeft: MAX_NESTED_MESSAGES, notes: [] };
}

/** Header facts of the block, or of its folded reading (header-readings.ts: the same fields first, then more). */
function headerFactsOf(block: HeaderBlock, folded: HeaderBlock | null, charset: HeaderCharset, budget: ParseBudget): HeaderFacts {
  budget.notes.push(...block.notes);
  if (folded !== null) for (const text of [...folded.notes, READ_BOTH_WAYS_NOTE]) note(budget, text);
  return headerFacts((folded ?? block).fields, charset, (text) => note(budget, text));
}

/** How the message's raw 8-bit header bytes are read (header-text.ts): those of the reading whose fields the facts take. */
function charsetOf(raw: Uint8Array, block: HeaderBlock, folded: HeaderBlock | null): HeaderCharset {
  return headerCharset((folded ?? block).fields, raw, block.bodyStart);
}

/**
 * Content facts of the folded reading (header-readings.ts): lines, padded units and nested
 * messages on what the first parse left (those are what a second parse of costly content costs),
 * but bytes of its own again. Its body is the message's tail, which the first parse was charged
 * for whole even where it handed postal-mime 4 MB of it (a text/plain first reading): on what
 * that left (32 MB less the first body), a 24 MB message's folded body was inspected for its
 * first 8 MB only: an `.exe` past that, which postal-mime and Thunderbird show, was not.
 */
async function foldedContentFacts(inputOf: MimeInputOf, budget: ParseBudget, charset: HeaderCharset): Promise<ContentFacts> {
  budget.bytesLeft = Math.max(budget.bytesLeft, MAX_PARSE_BYTES_TOTAL);
  return contentFacts(inputOf, 0, budget, charset);
}

/**
 * The other readings of the block whose MIME parse may find more than its own (header-readings.ts):
 * the one folding a line of spaces, and the one ending at a line that starts no field (Python's,
 * Postfix's). A reading whose parse would find the same is left out.
 */
function otherReadings(raw: Uint8Array, block: HeaderBlock, folded: HeaderBlock | null, budget: ParseBudget): HeaderBlock[] {
  const readings: HeaderBlock[] = [];
  if (folded && !sameMimeParse(raw, block, folded)) readings.push(folded);
  const cut = nonFieldReading(block);
  if (cut && !sameMimeParse(raw, cut, block)) {
    note(budget, NON_FIELD_NOTE);
    readings.push(cut);
  }
  return readings;
}

/**
 * Builds the facts the rules evaluate. Never throws: a message that cannot be parsed yields
 * the envelope facts with empty message facts and `parseError` set.
 */
export async function extractFacts(raw: Uint8Array, envelope: Envelope, opts: ExtractOptions = {}): Promise<MessageFacts> {
  const budget = newBudget();
  let header = emptyHeaderFacts();
  let content: ContentFacts = { body: "", attachments: [], attachmentTypes: [] };
  try {
    const forwarded = normalizeLineEndings(raw);
    const block = splitHeaderBlock(forwarded);
    const folded = foldedReading(forwarded, block);
    const charset = charsetOf(forwarded, block, folded);
    header = headerFactsOf(block, folded, charset, budget);
    if (opts.content !== false) {
      const others = otherReadings(forwarded, block, folded, budget);
      content = await contentFacts(mimeInputOf(forwarded, block.fields, block.bodyStart), 0, budget, charset);
      // On what the first parse left of the line budget (foldedContentFacts): two full parses
      // of a costly 25 MB message took its classification past 1 s of CPU.
      for (const other of others) {
        content = joinContent(content, await foldedContentFacts(mimeInputOf(forwarded, other.fields, other.bodyStart), budget, charset));
      }
    }
  } catch (err) {
    note(budget, `message not parsed: ${describeError(err)}`);
  }
  return assembleFacts(header, content, raw.byteLength, envelope, opts, budget);
}

/**
 * extractFacts of the message in the file at `path` (a parse worker's spool-file job), with
 * less memory: the file is read once for the header block and postal-mime's first input
 * (leaf contents cut), then let go of BEFORE postal-mime runs (`onRawDropped` is called then,
 * e.g. to collect it); a retry after a parse failure reads the file again. Same facts as
 * extractFacts on the file's bytes. Never throws (an unreadable file: `parseError`).
 */
export async function extractFactsFromFile(path: string, envelope: Envelope, opts: ExtractOptions & { onRawDropped?: () => void } = {}): Promise<MessageFacts> {
  const budget = newBudget();
  let header = emptyHeaderFacts();
  let content: ContentFacts = { body: "", attachments: [], attachmentTypes: [] };
  let size = 0;
  try {
    const top = await readTop(path, budget, opts.content !== false);
    opts.onRawDropped?.();
    header = top.header;
    size = top.size;
    let first: Uint8Array | null = top.firstInput;
    const inputOf: MimeInputOf = async (cut, b) => {
      if (cut === FIRST_CUT && first !== null) {
        const input = first;
        first = null;
        return input;
      }
      const raw = normalizeLineEndings(await readFileBytes(path));
      return mimeInput(raw, top.fields, top.bodyStart, parseEnd(raw, top.bodyStart, cut, b), b);
    };
    if (opts.content !== false) {
      content = await contentFacts(inputOf, 0, budget, top.charset);
      for (const other of top.otherReadings) {
        content = joinContent(content, await foldedContentFacts(async (cut, b) => {
          const raw = normalizeLineEndings(await readFileBytes(path));
          return mimeInput(raw, other.fields, other.bodyStart, parseEnd(raw, other.bodyStart, cut, b), b);
        }, budget, top.charset));
      }
    }
  } catch (err) {
    note(budget, `message not parsed: ${describeError(err)}`);
  }
  return assembleFacts(header, content, size, envelope, opts, budget);
}

/** Header facts and postal-mime's first input of the file; the raw bytes die with this call. */
async function readTop(path: string, budget: ParseBudget, content: boolean) {
  const stored = await readFileBytes(path);
  const raw = normalizeLineEndings(stored);
  const block = splitHeaderBlock(raw);
  const folded = foldedReading(raw, block);
  const charset = charsetOf(raw, block, folded);
  const header = headerFactsOf(block, folded, charset, budget);
  const others = content ? otherReadings(raw, block, folded, budget) : [];
  const firstInput = content ? mimeInput(raw, block.fields, block.bodyStart, parseEnd(raw, block.bodyStart, FIRST_CUT, budget), budget) : null;
  return { header, fields: block.fields, bodyStart: block.bodyStart, otherReadings: others, size: stored.byteLength, firstInput, charset: settled(charset, content) };
}

/**
 * `charset` with its part charset looked up now (when a content parse may ask for it), so that
 * it does not keep the file's bytes alive while postal-mime runs.
 */
function settled(charset: HeaderCharset, content: boolean): HeaderCharset {
  const ofParts = content && charset.declared === null ? charset.ofParts() : null;
  return { declared: charset.declared, ofParts: () => ofParts };
}

function assembleFacts(header: HeaderFacts, content: ContentFacts, size: number, envelope: Envelope, opts: ExtractOptions, budget: ParseBudget): MessageFacts {
  const facts: MessageFacts = {
    ...header,
    ...content,
    size,
    mailFrom: envelope.mailFrom,
    rcpt: [...envelope.rcptTo],
    clientIp: envelope.clientIp,
    helo: envelope.helo,
    tls: envelope.tls,
    spf: opts.auth?.spf ?? "none",
    dkim: opts.auth?.dkim ?? "none",
    dmarc: opts.auth?.dmarc ?? "none",
  };
  if (budget.notes.length > 0) facts.parseError = budget.notes.join("; ");
  return facts;
}
