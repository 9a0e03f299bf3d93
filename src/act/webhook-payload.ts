/**
 * The JSON body a `webhook` rule posts (SPEC §3 `url`): envelope, headers, text, html,
 * attachment metadata (no contents) and the raw message in base64. The attachments are those
 * the `attachment` rules see (parse/part-names.ts: every name a part gives, named text parts),
 * so a receiver that saves them gets the file a rule matched.
 *
 * Trusts nothing in the message. The top-level header block is decoded the way the rules see
 * it (parse/header-block.ts, header-text.ts, encoded-words.ts, address-list.ts: linear and
 * bounded), so `subject`, `from`, `to`… are what a rule was matched on: raw 8-bit headers in
 * the declared charset (EUC-KR, KOI8-R, Big5…), UTF-8 split across encoded words, and a To:
 * too big for postal-mime's header limit. postal-mime reads only the MIME structure (the
 * Content-* headers and the body) under explicit limits, its cost too (WEBHOOK_PARSE_MAX_LINES
 * and the next two: the payload is built in the delivery thread). A message that cannot be parsed (or
 * hits a limit) is still posted, with what could be decoded, `parseError` set, and the raw
 * bytes intact — the receiver can always re-parse.
 */
import { normalizeLineEndings } from "./normalize-crlf.ts";
import { mailboxesOf, parseAddressList } from "../parse/address-list.ts";
import { decodeEncodedWords } from "../parse/encoded-words.ts";
import { splitHeaderBlock, type RawHeaderField } from "../parse/header-block.ts";
import { foldedReading, NON_FIELD_NOTE, nonFieldReading, READ_BOTH_WAYS_NOTE, sameMimeParse } from "../parse/header-readings.ts";
import { fieldText, headerCharset, type HeaderCharset } from "../parse/header-text.ts";
import { budgetEnd, kindOf, QUOTED_PRINTABLE_VALUE, type WholePartsBudget } from "../parse/leaf-cut.ts";
import { MAX_ADDRESSES_PER_LIST, MAX_PARSE_LINES } from "../parse/limits.ts";
import { parseNamingParts, type NamedAttachment, type NamedEmail } from "../parse/part-names.ts";
import { decodedSize } from "../parse/line-ends.ts";
import { cutContents, restoredSizes, type ContentCut } from "./webhook-cut.ts";
import { restoredTexts } from "./webhook-text-cut.ts";

/**
 * Header bytes postal-mime may decode, counted over the whole message (every part's header, the
 * top one too): past it the payload has no text and no attachments, only parseError. It bounds
 * the work on header bytes (a 1 MiB To: of encoded-word mailboxes: ~165 ms; 128 KiB: ~40 ms) but
 * must not refuse ordinary mail: at 128 KiB a message of 1,000 attachments with ~140-byte part
 * headers (Content-Type with a name, Content-Disposition, Content-Transfer-Encoding) lost its
 * text, as did a top header block over 128 KiB, which the classifier reads up to 1 MiB.
 */
export const WEBHOOK_PARSE_MAX_HEADER_BYTES = 1024 * 1024;
/** MIME nesting depth parsed. Stops deeply nested multiparts. */
export const WEBHOOK_PARSE_MAX_DEPTH = 20;
/** message/rfc822 levels parsed inline; deeper ones are listed as attachments. */
export const WEBHOOK_PARSE_MAX_RFC822_DEPTH = 3;
/** Attachments listed. Stops a 10,000-part message from producing a huge metadata array. */
export const WEBHOOK_MAX_ATTACHMENTS = 1000;
/**
 * What postal-mime is handed for one payload, its nested messages included (parse/leaf-cut.ts
 * budgetEnd): lines (the classifier's MAX_PARSE_LINES), lines starting with "--", and padded
 * base64 units (not in quoted-printable content before a base64 part). The payload is built in the
 * delivery thread, and every forward and post waited behind a hostile one: 20 MB of bare newlines
 * in a message/rfc822 part took 23 s, 18 MB of "QQ=" base64 units 4.7 s, 3.5 million "--" lines
 * 3 s. Within these, any message's parse stays near half a second. Ordinary mail is far below them
 * (a 25 MB message of 76-column base64 has 330,000 lines; some mailers pad every base64 line:
 * 330,000 units), and the rest of a message past them is left out of `text`, `html` and
 * `attachments`, with `parseError` saying so (`raw` is whole).
 */
export const WEBHOOK_PARSE_MAX_LINES = MAX_PARSE_LINES;
/** Lines starting with "--" (postal-mime compares each with the open boundaries; budgetEnd walks each as a part). */
export const WEBHOOK_PARSE_MAX_DASH_LINES = 100_000;
/** Padded base64 units (postal-mime's decoder makes a buffer for each, ~1 µs). */
export const WEBHOOK_PARSE_MAX_PAD_UNITS = 400_000;

export interface WebhookEnvelope {
  mailFrom: string;
  rcptTo: string[];
  clientIp: string;
  helo: string;
  tls: boolean;
}

export interface WebhookMessage {
  /** Gateway message id (the one in `250 Queued as`). */
  id: string;
  receivedAt: number;
  rule: string | null;
  category: string;
  envelope: WebhookEnvelope;
  raw: Uint8Array;
}

export interface WebhookAttachmentMeta {
  filename: string | null;
  contentType: string;
  size: number;
  disposition: string | null;
  contentId: string | null;
  /**
   * Every distinct name the part gives its file, `filename` first: Content-Type `name=` and
   * Content-Disposition `filename=` can differ (invoice.pdf / invoice.exe), mail clients differ
   * in which one they save, and the `attachment` rules see each (parse/part-names.ts).
   */
  names: string[];
}

interface MailboxJson {
  name: string;
  address: string;
}

export interface WebhookPayload {
  id: string;
  /** Unix seconds the body was built; covered by the signature (the header alone is not). */
  timestamp: number;
  receivedAt: string;
  rule: string | null;
  category: string;
  envelope: WebhookEnvelope;
  subject: string | null;
  messageId: string | null;
  date: string | null;
  from: MailboxJson | null;
  to: MailboxJson[];
  cc: MailboxJson[];
  replyTo: MailboxJson[];
  /** Every header in message order, values unfolded but not decoded. */
  headers: { name: string; value: string }[];
  text: string | null;
  html: string | null;
  attachments: WebhookAttachmentMeta[];
  /** The stored message bytes (Received header included), base64. */
  raw: string;
  size: number;
  parseError?: string;
}

/** The payload but `raw`, which webhook-body.ts writes into the body straight from the message bytes. */
export type WebhookFields = Omit<WebhookPayload, "raw">;

export async function buildWebhookPayload(msg: WebhookMessage, nowMs: number): Promise<WebhookFields> {
  // Decoded from the message as the rules read it and the relay sends it (parse/extract.ts):
  // bare CRs and LFs as CRLF. Read as stored, `Subject: x<CR>Content-Type: multipart/mixed…` was
  // one Subject here and two fields to the rules: the subject, From and the attachment a webhook
  // rule matched were not in its payload. `raw` stays the stored bytes (webhook-body.ts).
  const forwarded = normalizeLineEndings(msg.raw);
  const top = topLevel(forwarded);
  const base: WebhookFields = {
    id: msg.id,
    timestamp: Math.floor(nowMs / 1000),
    receivedAt: new Date(msg.receivedAt).toISOString(),
    rule: msg.rule,
    category: msg.category,
    envelope: msg.envelope,
    ...top.fields,
    text: null,
    html: null,
    attachments: [],
    size: msg.raw.byteLength,
  };
  const notes = [...top.notes];
  const budget = newBudget();
  const first = await contentOf(top.mime, forwarded, notes, budget);
  // The other readings of the header block (parse/header-readings.ts: ended by a line of spaces,
  // or at a line that starts no field), as the rules read it: an attachment or words a rule
  // matched there are in the payload too. On what the first parse left of the budget: a second
  // budget of its own doubled the delivery thread's CPU for a costly 25 MB message (1.5 s).
  let content = first;
  for (const other of top.otherMimes) content = joinPayloadContent(content, await contentOf(other, forwarded, notes, budget));
  return { ...base, ...content, ...(notes.length > 0 ? { parseError: notes.join("; ") } : {}) };
}

type PayloadContent = Pick<WebhookFields, "text" | "html" | "attachments">;

/**
 * `text`, `html` and `attachments` of the MIME input, or none when it cannot be parsed (`notes`
 * says why, and which limits were hit); `budget` is used up by the parse (its whole-body parse's).
 */
async function contentOf(mime: MimeInput, raw: Uint8Array, notes: string[], budget: WholePartsBudget): Promise<Partial<PayloadContent>> {
  let parsed: { email: NamedEmail; sizes: number[] } | null = null;
  const limits = new Set<string>(mime.dashesCut ? [DASHES_NOTE] : []);
  try {
    parsed = await parseContent(mime, raw, limits, budget);
  } catch (err) {
    notes.push(err instanceof Error ? err.message : String(err));
  }
  for (const limit of limits) if (!notes.includes(limit)) notes.push(limit);
  if (!parsed) return {};
  return {
    text: parsed.email.text ?? null,
    html: parsed.email.html ?? null,
    attachments: parsed.email.attachments.slice(0, WEBHOOK_MAX_ATTACHMENTS).map((a, i) => ({
      filename: a.filename,
      contentType: a.mimeType,
      size: parsed.sizes[i]!,
      disposition: a.disposition,
      contentId: a.contentId ?? null,
      names: namesOf(a),
    })),
  };
}

/** Both readings' content: the first's text and HTML (the other's where the first has none, both texts when they differ) and the attachments of both. */
function joinPayloadContent(first: Partial<PayloadContent>, second: Partial<PayloadContent>): Partial<PayloadContent> {
  const texts = [first.text, second.text].filter((text): text is string => typeof text === "string" && text !== "");
  return {
    text: texts.length === 0 ? (first.text ?? second.text ?? null) : [...new Set(texts)].join("\n"),
    html: first.html ?? second.html ?? null,
    attachments: [...(first.attachments ?? []), ...onlyInSecond(first.attachments ?? [], second.attachments ?? [])].slice(0, WEBHOOK_MAX_ATTACHMENTS),
  };
}

/**
 * The second reading's attachments less those the first lists (each of the first's matching one
 * of the second's at most, so two equal files of one reading stay two): both readings parse the
 * same multipart when only a field past the spaces (a Content-Transfer-Encoding) or a "--" line
 * before its body tells them apart, and the payload listed each of its files twice.
 */
function onlyInSecond(first: WebhookAttachmentMeta[], second: WebhookAttachmentMeta[]): WebhookAttachmentMeta[] {
  const unmatched = new Map<string, number>();
  for (const a of first) unmatched.set(JSON.stringify(a), (unmatched.get(JSON.stringify(a)) ?? 0) + 1);
  return second.filter((a) => {
    const key = JSON.stringify(a);
    const left = unmatched.get(key) ?? 0;
    if (left > 0) unmatched.set(key, left - 1);
    return left === 0;
  });
}

/**
 * postal-mime's parse of the body and each attachment's decoded size (line-ends.ts: as a MIME
 * reader gives it, line breaks as CRLF, not the one before the boundary). Big attachment contents
 * and big UTF-8 text (8bit or quoted-printable) are left out of the parse (webhook-cut.ts,
 * webhook-text-cut.ts) when their sizes and text can be restored exactly; when they cannot, the
 * whole body is parsed.
 * A text part that names a file (`text/plain; name="x.exe"`) is listed as an attachment as the
 * rules see it, its text staying in `text` or `html` too; its size is its parsed size, which a
 * text cut would shorten, so a message with both is parsed whole.
 * What postal-mime is handed is within `shared` (nested messages included) for both parses
 * together, so the whole body's parse after the cut body's gets what that one left; `limits` gets
 * the notes of the limits hit. The cut body's parse runs only when all of it fits (cut short, it
 * would lose markers); the whole body's then starts from what `shared` held before the cut one.
 */
async function parseContent(mime: MimeInput, raw: Uint8Array, limits: Set<string>, shared: WholePartsBudget): Promise<{ email: NamedEmail; sizes: number[] }> {
  const headBytes = mime.head.reduce((n, part) => n + part.byteLength, 0);
  const within = (input: Buffer, budget: WholePartsBudget) => input.subarray(0, budgetEnd(input, headBytes, input.byteLength, mime.top.type, budget, mime.top.quotedPrintable));
  const start = { ...shared };
  const budget = shared;
  try {
    if (mime.cut) {
      const input = Buffer.concat([...mime.head, ...mime.cut.body]);
      const fits = within(input, budget).byteLength === input.byteLength;
      const email = fits ? await parseWithin(input, budget, mime.charset).catch(() => null) : null;
      if (!fits) Object.assign(budget, start);
      const namedText = email !== null && mime.cut.texts.length > 0 && email.attachments.some((a) => a.inlineText);
      const sizes = email && !namedText && restoredSizes(email.attachments, mime.cut);
      const texts = sizes && restoredTexts(email, raw, mime.cut.textNonce, mime.cut.texts);
      if (email && sizes && texts) return { email: { ...email, ...texts }, sizes: email.attachments.map((a, i) => (a.inlineText ? (a.textSize ?? 0) : sizes[i]!)) };
    }
    const email = await parseWithin(within(Buffer.concat([...mime.head, mime.body]), budget), budget, mime.charset);
    return { email, sizes: email.attachments.map((a) => (a.inlineText ? (a.textSize ?? 0) : decodedSize(typeof a.content === "string" ? a.content.length : a.content.byteLength, a.lineEnds))) };
  } finally {
    for (const note of budgetNotes(budget)) limits.add(note);
  }
}

/** `filename`, then every other name the part gives (none for a part of a message postal-mime parsed inline). */
function namesOf(attachment: NamedAttachment): string[] {
  return [...new Set([attachment.filename ?? "", ...(attachment.names ?? [])])].filter((name) => name !== "");
}

/**
 * postal-mime's parse of `input`, each nested message cut to what is left of the budget first.
 * A nested message not transfer-encoded (a 7bit forward) had its parts' padded units counted in
 * the walk of the message that holds it: counted again, a forwarded attachment padded on every
 * line used the budget up at half its size (a forward of a forward, at a third).
 */
function parseWithin(input: Uint8Array, budget: WholePartsBudget, charset: HeaderCharset): Promise<NamedEmail> {
  const cutSubMessage = (content: Uint8Array, asIs: boolean): Uint8Array => {
    const block = splitHeaderBlock(content);
    const top = topPart(block.fields);
    return content.subarray(0, budgetEnd(content, block.bodyStart, content.byteLength, top.type, budget, top.quotedPrintable, asIs));
  };
  const options = { maxHeadersSize: WEBHOOK_PARSE_MAX_HEADER_BYTES, maxNestingDepth: WEBHOOK_PARSE_MAX_DEPTH, maxRfc822NestingDepth: WEBHOOK_PARSE_MAX_RFC822_DEPTH };
  return parseNamingParts(input, options, cutSubMessage, () => charset, true);
}

function newBudget(): WholePartsBudget {
  return { left: WEBHOOK_PARSE_MAX_LINES, cut: false, padsLeft: WEBHOOK_PARSE_MAX_PAD_UNITS, padsCut: false, spansLeft: WEBHOOK_PARSE_MAX_DASH_LINES, spansCut: false };
}

const DASHES_NOTE = `more than ${WEBHOOK_PARSE_MAX_DASH_LINES} lines starting with "--" to decode, the rest not decoded`;

/** What `parseError` says of the budget's limits that were hit. */
function budgetNotes(budget: WholePartsBudget): string[] {
  const notes: string[] = [];
  if (budget.cut) notes.push(`more than ${WEBHOOK_PARSE_MAX_LINES} lines to decode, the rest not decoded`);
  if (budget.spansCut) notes.push(DASHES_NOTE);
  if (budget.padsCut) notes.push(`more than ${WEBHOOK_PARSE_MAX_PAD_UNITS} padded base64 units (runs of '=') to decode, the rest not decoded`);
  return notes;
}

type HeaderFields = Pick<WebhookPayload, "subject" | "messageId" | "date" | "from" | "to" | "cc" | "replyTo" | "headers">;

/** The top-level header fields of the payload, postal-mime's input (Content-* headers + body), and the limits hit. */
function topLevel(raw: Uint8Array): { fields: HeaderFields; mime: MimeInput; otherMimes: MimeInput[]; notes: string[] } {
  const block = splitHeaderBlock(raw);
  // Ended by a line of spaces: the fields of the reading that goes on (the same ones first, then more), as the rules read them.
  const folded = foldedReading(raw, block);
  // Ended at a line that starts no field, as Python and a Postfix relay read it; left out when its parse finds the same.
  const nonField = nonFieldReading(block);
  const cut = nonField && !sameMimeParse(raw, nonField, block) ? nonField : null;
  const fields = (folded ?? block).fields;
  const charset = headerCharset(fields, raw, block.bodyStart);
  const headers = fields.map((field) => ({ name: field.originalName, value: fieldText(field, charset) }));
  const first = (name: string): string | null => {
    const at = fields.findIndex((field) => field.name === name);
    return at < 0 ? null : (headers[at]?.value ?? null);
  };
  const all = (name: string): string[] => headers.filter((_, i) => fields[i]?.name === name).map((h) => h.value);
  const subject = first("subject");
  const messageId = first("message-id");
  const date = first("date");
  const from = parseAddressList(first("from") ?? "", 1).mailboxes[0];
  return {
    fields: {
      subject: subject === null ? null : decodeEncodedWords(subject),
      messageId: messageId ? decodeEncodedWords(messageId) : null,
      date: date === null ? null : isoDate(date),
      from: from ? { name: from.name, address: from.address } : null,
      to: mailboxesOf(all("to"), MAX_ADDRESSES_PER_LIST),
      cc: mailboxesOf(all("cc"), MAX_ADDRESSES_PER_LIST),
      replyTo: mailboxesOf(all("reply-to"), MAX_ADDRESSES_PER_LIST),
      headers,
    },
    mime: mimeInput(raw, block.fields, block.bodyStart, charset),
    otherMimes: [folded && !sameMimeParse(raw, block, folded) ? folded : null, cut].filter((b) => b !== null).map((b) => mimeInput(raw, b.fields, b.bodyStart, charset)),
    notes: [...(folded ? [...block.notes, ...folded.notes.filter((n) => !block.notes.includes(n)), READ_BOTH_WAYS_NOTE] : block.notes), ...(cut ? [NON_FIELD_NOTE] : [])],
  };
}

/** As postal-mime gives it: ISO 8601 when the value reads as a date, else the value. */
function isoDate(value: string): string {
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? value : date.toISOString();
}


/** The message as postal-mime needs it for the body: the top-level Content-* fields and a blank line, then the body (in full or cut). */
interface MimeInput {
  head: Uint8Array[];
  /** The body, up to the line past WEBHOOK_PARSE_MAX_DASH_LINES lines starting with "--" in a multipart. */
  body: Uint8Array;
  /** Set when `body` was cut there. */
  dashesCut: boolean;
  cut: ContentCut | null;
  top: { type: string | null; quotedPrintable: boolean };
  /** How the message's raw 8-bit header bytes are read: part headers too (parse/part-header-charset.ts). */
  charset: HeaderCharset;
}

/** The type and quoted-printable encoding a message's own Content-Type and Content-Transfer-Encoding fields give. */
function topPart(fields: RawHeaderField[]): { type: string | null; quotedPrintable: boolean } {
  const contentType = fields.find((field) => field.name === "content-type");
  const encoding = fields.find((field) => field.name === "content-transfer-encoding");
  return {
    type: contentType ? (/^\s*([^\s;]+)/.exec(Buffer.from(contentType.value).toString("latin1"))?.[1] ?? null) : null,
    quotedPrintable: encoding !== undefined && QUOTED_PRINTABLE_VALUE.test(Buffer.from(encoding.value).toString("latin1")),
  };
}

function mimeInput(raw: Uint8Array, fields: RawHeaderField[], bodyStart: number, charset: HeaderCharset): MimeInput {
  const head: Uint8Array[] = [];
  for (const field of fields) {
    if (!field.name.startsWith("content-")) continue;
    head.push(Buffer.from(`${field.originalName}:`, "latin1"), field.value, Buffer.from("\r\n"));
  }
  head.push(Buffer.from("\r\n"));
  const top = topPart(fields);
  const topHeader = Buffer.concat(head).toString("latin1");
  // Before webhook-cut.ts walks the parts (3.5 million "--" lines took it 1.6 s); a leaf at the
  // top has no parts, its "--" lines are text.
  const end = kindOf(top.type) === "container" ? dashLinesEnd(raw, bodyStart) : raw.byteLength;
  return { head, body: raw.subarray(bodyStart, end), dashesCut: end < raw.byteLength, cut: cutContents(raw, bodyStart, end, { type: top.type, header: topHeader }), top, charset };
}

/** The start of the line past WEBHOOK_PARSE_MAX_DASH_LINES lines starting with "--" in the body, or the end. */
function dashLinesEnd(raw: Uint8Array, bodyStart: number): number {
  const buffer = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  let lines = 0;
  // From the line end before the body, as budgetEnd: a body that opens with "--" counts it.
  for (let at = buffer.indexOf("\n--", Math.max(0, bodyStart - 1)); at >= 0; at = buffer.indexOf("\n--", at + 3)) {
    if (++lines > WEBHOOK_PARSE_MAX_DASH_LINES) return at + 1;
  }
  return raw.byteLength;
}
