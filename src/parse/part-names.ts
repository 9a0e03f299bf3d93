/**
 * Every name a MIME part gives its file, for the `attachment` fact. A part can name itself
 * twice, in Content-Type `name=` and Content-Disposition `filename=`, and each of those can
 * come plain, RFC 2231 extended (`filename*=utf-8''…`), in RFC 2231 sections (`filename*0*=`,
 * `filename*1=`…) or as RFC 2047 encoded words. postal-mime keeps one of them (filename, else
 * name; the extended form over the plain one), but mail clients differ in which one they show
 * and save: with filename="invoice.pdf" and name="invoice.exe" a rule saw only the .pdf while
 * the recipient's client could save the .exe. So each distinct name counts.
 *
 * The names are read from the fields postal-mime split for the part (every Content-Type and
 * Content-Disposition field, a repeated one too, as clients differ there as well), through a
 * subclass that hooks postal-mime's internal collectAttachment and isInlineTextNode. Trusts
 * nothing in the values; linear in their length (postal-mime's maxHeadersSize bounds them);
 * never throws.
 */
import PostalMime, { type Attachment, type Email } from "postal-mime";
import { htmlMetaCharset, ownTextDecoder, standardCharsetName } from "./charset.ts";
import { decodeEncodedWords } from "./encoded-words.ts";
import { splitHeaderBlock } from "./header-block.ts";
import { headerCharset, type HeaderCharset } from "./header-text.ts";
import { MAX_HEADER_FIELD_BYTES } from "./limits.ts";
import { validMimeType } from "./mime-type.ts";
import { parameters, parameterValues, type Parameter } from "./mime-parameters.ts";
import { rawShownHeader } from "./nested-header.ts";
import { droppedHeaderText } from "./nested-readings.ts";
import { charsetFields, chosenName, notUtf8, type PartField, type RawPartLines } from "./part-header-charset.ts";
import { countLineEnds, decodedSize, type DecodingNode, type LineEnds } from "./line-ends.ts";

/** The part as postal-mime's collectAttachment gets it (only what is read here). */
interface PartNode extends DecodingNode {
  headers: PartField[];
  /** Its header lines as postal-mime decoded them (UTF-8, U+FFFD for what is not), while `state` is "header". */
  headerLines: string[];
  state: string;
  contentType: { parsed: { value: string; params: Record<string, string> } };
  contentDisposition: { parsed: { value: string; params: Record<string, string> } };
  contentId?: string;
  /** Content-Description, unfolded (postal-mime decodes its encoded words into the attachment's description). */
  contentDescription?: string;
  /** `encoding`: the first token of its Content-Transfer-Encoding, as postal-mime picks its decoder by. */
  contentTransferEncoding: { encoding: string };
  /** The decoded content (transfer encoding undone), once the part is parsed. */
  content: ArrayBuffer | null;
  /** Its text, decoded by the Content-Type charset (postal-mime's, replaced here for UTF-7). */
  getTextContent(): string;
  /** Its header lines as written, one entry per field (continuation lines joined with "\n"), a line that is no field too. */
  rawHeaderLines?: { key: string; line: string }[];
}

/**
 * An attachment with every name its part gives (`names`, decoded, possibly empty);
 * `inlineText`: a named text part that postal-mime read as body text (no content here: the text
 * is in the body; `textSize` is its decoded size in bytes, for the webhook's listing).
 * `lineEnds`: for the decoded size of a part not base64 (line-ends.ts), when the parse counted them.
 */
export type NamedAttachment = Attachment & { names?: string[]; inlineText?: boolean; textSize?: number; lineEnds?: LineEnds };

/** A parse whose attachments carry their names. */
export type NamedEmail = Omit<Email, "attachments"> & { attachments: NamedAttachment[] };

/** The names parameter `base` gives in one field: plain, extended and sectioned, each decoded. */
function namesOf(params: Parameter[], base: string): string[] {
  const { plain, extended } = parameterValues(params, base);
  return [...plain, ...extended].map(decodeEncodedWords);
}

/** Every distinct name the part's Content-Type (`name`) and Content-Disposition (`filename`) fields give, in order. */
export function partNames(fields: readonly PartField[]): string[] {
  const names = new Set<string>();
  for (const field of fields) {
    const base = field.key === "content-type" ? "name" : field.key === "content-disposition" ? "filename" : null;
    if (base === null) continue;
    for (const name of namesOf(parameters(field.value), base)) if (name !== "") names.add(name);
  }
  return [...names];
}

export { validMimeType };

/** A line Python's email package reads as part of a header: a field, an mbox `From ` line, a continuation. */
const HEADER_LINE = /^(?:[\x21-\x39\x3b-\x7e]*:|From |[ \t])/;

/**
 * A text part's header lines from the first that is no field on, put before its text: Python's
 * email package ends the part's header there and shows them as the part's text, while
 * postal-mime (and Thunderbird) read on to the empty line and drop them, so `Content-Type:
 * text/plain` / ` ` / `Please send the wire transfer` hid the text from `body` rules. Both
 * readings, as for the top-level block (header-readings.ts). Bounded by the part header cap.
 */
function textPastHeader(node: PartNode): { past: string; pythonText: boolean } | null {
  const lines = node.rawHeaderLines ?? [];
  const first = lines.findIndex((entry) => !HEADER_LINE.test(entry.line));
  if (first < 0) return null;
  return { past: lines.slice(first).map((entry) => entry.line).join("\n"), pythonText: pythonReadsText(lines.slice(0, first)) };
}

/**
 * Whether Python, whose header of the part ends at the break, reads it as body text: the first
 * Content-Type before the break is text/plain or text/html (none: text/plain), and no
 * Content-Disposition before it says attachment. A part whose `Content-Type:
 * application/x-zip-compressed;` is followed by its `name=` on a line of its own (no fold) is a
 * zip to Python too: its header lines are not text.
 */
function pythonReadsText(lines: readonly { line: string }[]): boolean {
  const field = (name: string): string | null => {
    for (const { line } of lines) {
      const sep = line.indexOf(":");
      if (sep >= 0 && line.slice(0, sep).trim().toLowerCase() === name) return line.slice(sep + 1).split(";")[0]!.trim().toLowerCase();
    }
    return null;
  };
  const type = field("content-type");
  const text = type === null || ["text/plain", "text/html"].includes(validMimeType(type));
  return text && field("content-disposition") !== "attachment";
}

function withTextPastHeader(node: PartNode, past: string): void {
  const text = node.getTextContent.bind(node);
  node.getTextContent = () => `${past}\n${text()}`;
}

/** For an HTML leaf without a charset parameter, the charset its `<meta>` tag names (charset.ts htmlMetaCharset). */
function htmlCharset(node: PartNode): string | null {
  if (node.contentType.parsed.value !== "text/html" || !node.content) return null;
  const content = node.content as ArrayBuffer | Uint8Array; // a Uint8Array at run time: no copy then
  return htmlMetaCharset(content instanceof Uint8Array ? content : new Uint8Array(content));
}

type CollectAttachment = (this: PostalMime, node: PartNode, ...rest: unknown[]) => void;
type IsInlineTextNode = (this: PostalMime, node: PartNode) => boolean;
type ProcessLine = (this: PostalMime, line: Uint8Array, isFinal: boolean) => Promise<void>;
type AddTextEntry = (this: PostalMime, node: PartNode, type: "plain" | "html", entry: { type: "subMessage"; value: Email } | { type: "text"; value: string }) => void;

const hooks = PostalMime.prototype as unknown as {
  collectAttachment?: CollectAttachment;
  isInlineTextNode?: IsInlineTextNode;
  collectSubMessage?: unknown;
  addTextEntry?: AddTextEntry;
  processLine?: ProcessLine;
};
const collectAttachment = hooks.collectAttachment;
const isInlineTextNode = hooks.isInlineTextNode;
const addTextEntry = hooks.addTextEntry;
const processLine = hooks.processLine;
// An upgrade that renamed a hook would silently hide names from the rules again: fail at load instead.
if (typeof collectAttachment !== "function" || typeof isInlineTextNode !== "function") {
  throw new Error("postal-mime has no collectAttachment / isInlineTextNode: part names cannot be read");
}
// Nor may a renamed collectSubMessage let nested messages be parsed without their cut (see NamingParser).
if (typeof hooks.collectSubMessage !== "function" || typeof addTextEntry !== "function") {
  throw new Error("postal-mime has no collectSubMessage / addTextEntry: nested messages cannot be cut");
}
// Nor may a renamed processLine hide raw 8-bit file names from the charset reading (part-header-charset.ts).
if (typeof processLine !== "function") throw new Error("postal-mime has no processLine: raw part header bytes cannot be read");

/**
 * Cuts the decoded bytes of an inline message/rfc822 part before a nested parser reads them.
 * `asIs`: the part had no base64 or quoted-printable encoding, so its bytes are those the
 * parent's own cut walked.
 */
export type SubMessageCut = (content: Uint8Array, asIs: boolean) => Uint8Array;

/** postal-mime's internal state that collectSubMessage reads and writes (postal-mime 4). */
interface ParserState {
  root: PartNode;
  currentNode: PartNode;
  mimeOptions: { maxNestingDepth: number; maxHeadersSize: number };
  maxRfc822NestingDepth: number;
  rfc822NestingDepth: number;
  textMap: Map<unknown, unknown>;
  attachments: NamedAttachment[];
}

/**
 * postal-mime, each attachment also carrying every name its part gives (`names`). A text part
 * that names a file but is not marked `attachment` (`text/plain; name="x.exe"`, `text/html`
 * with `Content-Disposition: inline; filename=…`) stays body text, as postal-mime reads it, and
 * is listed as an attachment too (`inlineText`): mail clients list and save it under that name,
 * and an `attachment ends_with .exe` or `.html` rule never saw it.
 */
class NamingParser extends PostalMime {
  declare attachments: NamedAttachment[];

  /**
   * `names`: false in the parser of a nested message, which lists that message's files as
   * postal-mime's own nested parser does (filename alone, README). `cutSubMessage`: see parseNamingParts.
   */
  /** Each part's header lines that are not UTF-8 (part-header-charset.ts), kept until the part is collected. */
  private readonly rawLines = new Map<PartNode, RawPartLines>();
  private charset: HeaderCharset | null = null;
  /** Whether the message's own header has a line postal-mime misreads (nested-header.ts). */
  private rawRootHeader = false;
  /** Whether the message is one leaf that isInlineTextNode read (textPastHeader shows its header's other reading). */
  private leafRoot = false;

  /**
   * `charsetOf`: how this message's raw 8-bit header bytes are read (header-text.ts), asked only
   * when a part header has bytes that are not UTF-8; null: postal-mime's reading alone.
   * `lineEnds`: count line breaks for decoded sizes (line-ends.ts) of a message ("nested": inside a part); null: the rules need none.
   */
  constructor(options: ConstructorParameters<typeof PostalMime>[0], private readonly names: boolean, private readonly cutSubMessage: SubMessageCut | null, private readonly charsetOf: (() => HeaderCharset) | null, private readonly lineEnds: "message" | "nested" | null = null) {
    super(options);
  }

  // Not `async`: it runs for every line of the message, body included, and an async wrapper
  // cost each line one more promise (the corpus parse ~6% slower).
  processLine(line: Uint8Array, isFinal: boolean): Promise<void> {
    // A line with a byte over 0x7F is never a boundary line (those are ASCII), so it goes to the
    // part being read: keep it when it is a header line postal-mime will read with U+FFFD.
    const node = (this as unknown as ParserState).currentNode;
    if (node.state === "header" && this.charsetOf !== null && notUtf8(line)) {
      const lines = this.rawLines.get(node) ?? new Map<number, Uint8Array>();
      lines.set(node.headerLines.length, line);
      this.rawLines.set(node, lines);
      if (node === (this as unknown as ParserState).root) this.rawRootHeader = true;
    } else if (this.lineEnds !== null && node.state === "body" && node.lineEnds === undefined) {
      // Its decoder is set up, no body line fed yet. Only the message's own single part has no boundary after it.
      countLineEnds(node, node !== (this as unknown as ParserState).root || this.lineEnds === "nested");
    }
    return (processLine as ProcessLine).call(this, line, isFinal);
  }

  /** The part's names read in the message's charset, where a header line of it is not UTF-8 (see part-header-charset.ts); null: none such. */
  private charsetNames(node: PartNode): { chosen: string; names: string[] } | null {
    const raw = this.rawLines.get(node);
    if (raw === undefined || this.charsetOf === null) return null;
    this.rawLines.delete(node);
    this.charset ??= this.charsetOf();
    const fields = charsetFields(node.headerLines, raw, this.charset);
    return { chosen: chosenName(fields), names: partNames(fields) };
  }

  collectAttachment(node: PartNode, ...rest: unknown[]): void {
    const before = this.attachments.length;
    const chosen = node.contentDisposition.parsed.params.filename || node.contentType.parsed.params.name || "";
    const restore = hideLongValues(node);
    (collectAttachment as CollectAttachment).call(this, node, ...rest);
    restore();
    const attachment = this.attachments[this.attachments.length - 1];
    if (!attachment || this.attachments.length === before) return;
    // The name postal-mime picked, decoded as the rules and the subject are: postal-mime's own
    // decoding of encoded words split inside a character (`=?utf-8?B?6rKs7A==?= =?utf-8?B?oIHshJwucGRm?=`)
    // gave `견���서.pdf` as the webhook's `filename` while the rules saw `견적서.pdf`.
    if (chosen) attachment.filename = decodeEncodedWords(chosen);
    // Raw 8-bit names: `filename` as a mail client shows it, and both readings among the names.
    const read = this.charsetNames(node);
    if (read?.chosen) attachment.filename = read.chosen;
    if (this.names) attachment.names = [...new Set([...(read?.names ?? []), ...partNames(node.headers)])];
    if (node.lineEnds) attachment.lineEnds = node.lineEnds;
  }

  isInlineTextNode(node: PartNode): boolean {
    if (node === (this as unknown as ParserState).root) this.leafRoot = true;
    // The first hook postal-mime calls for every leaf: from here on its text/attachment choice,
    // the body's text type and the attachment's mimeType all read the repaired type.
    node.contentType.parsed.value = validMimeType(node.contentType.parsed.value);
    const params = node.contentType.parsed.params;
    const own = ownTextDecoder(params.charset);
    if (own !== null) node.getTextContent = () => (node.content ? own.decode(new Uint8Array(node.content)) : "");
    const standard = params.charset ? standardCharsetName(params.charset) : htmlCharset(node);
    if (standard !== null) params.charset = standard;
    const inline = (isInlineTextNode as IsInlineTextNode).call(this, node);
    const found = textPastHeader(node);
    // A field past the break (`Content-Disposition: attachment`, `Content-Type:
    // application/octet-stream`) made postal-mime file the part as an attachment, while Python,
    // whose header ended at the break, shows it as text/plain: its lines are body text too, and
    // so is its content (the text of `Content-Disposition: attachment` past the break was hidden
    // from `body` rules), unless base64 of a type not text (a binary's bytes; Python shows the
    // base64 letters).
    if (found !== null && inline) withTextPastHeader(node, found.past);
    else if (found !== null && found.pythonText) {
      const binary = !node.contentType.parsed.value.startsWith("text/") && /base64/i.test(node.contentTransferEncoding.encoding);
      const value = binary ? found.past : `${found.past}\n${node.getTextContent()}`;
      // An HTML part's text is HTML, as on the inline path (withTextPastHeader): read as plain,
      // its tags split words (`wire <b>transfer</b>`) and its entities (`w&#105;re`) hid them.
      const html = !binary && node.contentType.parsed.value === "text/html";
      (addTextEntry as AddTextEntry).call(this, node, html ? "html" : "plain", { type: "text", value });
    }
    const read = inline && this.names ? this.charsetNames(node) : null;
    const names = inline && this.names ? [...new Set([...(read?.names ?? []), ...partNames(node.headers)])] : [];
    if (names.length > 0) {
      const disposition = node.contentDisposition.parsed.value || null;
      // The name postal-mime's collectAttachment would pick (filename, else name), as for any attachment.
      const chosen = read?.chosen || node.contentDisposition.parsed.params.filename || node.contentType.parsed.params.name || "";
      this.attachments.push({
        filename: chosen ? decodeEncodedWords(chosen) : null,
        names,
        mimeType: node.contentType.parsed.value,
        disposition,
        ...(node.contentId ? { contentId: node.contentId } : {}),
        content: new ArrayBuffer(0),
        inlineText: true,
        textSize: decodedSize(node.content?.byteLength ?? 0, node.lineEnds),
      });
    }
    return inline;
  }

  /**
   * postal-mime 4's collectSubMessage, with the nested message's bytes cut by `cutSubMessage`
   * first and its parser one of these (so its own nested messages are cut too). postal-mime
   * decodes the part (base64, quoted-printable) before a nested parser reads it: 16 MB of base64
   * of bare newlines was 12 million lines that no cut of the outer message could see (6 s).
   */
  async collectSubMessage(node: PartNode & { subMessage?: Email }): Promise<void> {
    const self = this as unknown as ParserState;
    const cut = this.cutSubMessage;
    const content = node.content ?? new ArrayBuffer(0);
    // postal-mime's decoder choice (mime-node.js setupContentDecoder): anything else passes through.
    const asIs = !/base64|quoted-printable/i.test(node.contentTransferEncoding.encoding);
    const cutBytes = cut ? cut(new Uint8Array(content), asIs) : null;
    const kept = cutBytes ? withLongFieldsCut(cutBytes) : null;
    const changed = kept !== null && (kept !== cutBytes || kept.byteLength < content.byteLength);
    // The nested message's raw 8-bit bytes are read in its own charset, as its sender wrote them.
    const charsetOf = this.charsetOf && (() => messageCharset(changed && kept ? kept : new Uint8Array(content)));
    const subParser = new NamingParser({ ...self.mimeOptions, maxRfc822NestingDepth: self.maxRfc822NestingDepth, attachmentEncoding: "arraybuffer" }, false, cut, charsetOf, this.lineEnds && "nested");
    (subParser as unknown as ParserState).rfc822NestingDepth = self.rfc822NestingDepth + 1;
    // The ArrayBuffer itself when nothing is cut: postal-mime copies a view.
    const subMessage = (node.subMessage = await subParser.parse(changed ? kept : content));
    // Its Subject, From… as the text's header block shows them: raw 8-bit bytes in its charset.
    if (subParser.rawRootHeader) Object.assign(subMessage, rawShownHeader(changed && kept ? kept : new Uint8Array(content)));
    if (subMessage.text || !subMessage.html) (addTextEntry as AddTextEntry).call(this, node, "plain", { type: "subMessage", value: subMessage });
    if (subMessage.html) (addTextEntry as AddTextEntry).call(this, node, "html", { type: "subMessage", value: subMessage });
    // After its header block, the header lines postal-mime dropped that the rules read as its
    // text (nested-readings.ts): a multipart forward's `Please send the wire transfer today` on a
    // line that starts no field was in the rules' `body`, not in the post's `text`. (A forward
    // that is one leaf has them already: textPastHeader.)
    const dropped = subParser.leafRoot ? null : droppedHeaderText(changed && kept ? kept : new Uint8Array(content));
    if (dropped !== null) {
      // An HTML-only forward has no plain entry yet: its header block first, as for any other.
      if (!subMessage.text && subMessage.html) (addTextEntry as AddTextEntry).call(this, node, "plain", { type: "subMessage", value: subMessage });
      (addTextEntry as AddTextEntry).call(this, node, "plain", { type: "text", value: dropped });
    }
    (subParser as unknown as ParserState).textMap.forEach((entry, textNode) => self.textMap.set(textNode, entry));
    for (const attachment of subMessage.attachments) self.attachments.push(attachment);
  }
}

/*
 * postal-mime's decodeWords takes time quadratic in a value's length when it is a run of encoded
 * words (it joins them into one string and re-reads that string for each next word): a part's
 * 800 KB `name=`, `Content-Description` or nested Subject / From of encoded words took 0.6-0.9 s
 * of the delivery thread per webhook post, for a message under 1 MB. The values are decoded here
 * (decodeEncodedWords, linear) or cut as the top-level header is (MAX_HEADER_FIELD_BYTES).
 */

/** Values longer than this are not handed to postal-mime's decodeWords (no file name is this long). */
const LONG_VALUE_CHARS = 16 * 1024;

/**
 * Cuts the part's long file name and description values for postal-mime's collectAttachment,
 * which decodes them; returns the undo. collectAttachment above decodes the whole file name
 * itself; the description is read by nobody (not in the webhook's listing), so it stays cut.
 */
function hideLongValues(node: PartNode): () => void {
  const params = [node.contentDisposition.parsed.params, node.contentType.parsed.params];
  const saved: (() => void)[] = [];
  for (const p of params) {
    for (const key of ["filename", "name"]) {
      const value = p[key];
      if (value !== undefined && value.length > LONG_VALUE_CHARS) {
        p[key] = value.slice(0, LONG_VALUE_CHARS);
        saved.push(() => void (p[key] = value));
      }
    }
  }
  const description = node.contentDescription;
  if (description !== undefined && description.length > LONG_VALUE_CHARS) {
    node.contentDescription = description.slice(0, LONG_VALUE_CHARS);
    saved.push(() => void (node.contentDescription = description));
  }
  return () => saved.forEach((undo) => undo());
}

/**
 * A nested message with every header field cut to MAX_HEADER_FIELD_BYTES, as the top-level header
 * is read (header-block.ts): its header rebuilt from the fields, unfolded. The same bytes when
 * no field is that long (a cheap check first: no header line can be that long without such a field
 * unless the header is at least that long).
 */
function withLongFieldsCut(content: Uint8Array): Uint8Array {
  if (content.byteLength <= MAX_HEADER_FIELD_BYTES) return content;
  const block = splitHeaderBlock(content);
  if (!block.notes.some((note) => note.startsWith("header field longer"))) return content;
  const head = block.fields.map((f) => Buffer.concat([Buffer.from(`${f.originalName}:`, "latin1"), f.value, CRLF]));
  return Buffer.concat([...head, CRLF, content.subarray(block.bodyStart)]);
}

const CRLF = Buffer.from("\r\n");

/**
 * PostalMime.parse, with `names` on each attachment. `cutSubMessage`: applied to the bytes of
 * each inline message/rfc822 part, at every depth, before it is parsed (the webhook's payload
 * keeps the cost of nested messages within its budget; the classifier parses none inline).
 * `charsetOf`: how the message's raw 8-bit header bytes are read (part-header-charset.ts).
 * `lineEnds`: each attachment not base64 carries its line ends, for its decoded size (line-ends.ts).
 */
export async function parseNamingParts(input: Uint8Array, options: ConstructorParameters<typeof PostalMime>[0], cutSubMessage: SubMessageCut | null = null, charsetOf: (() => HeaderCharset) | null = null, lineEnds = false): Promise<NamedEmail> {
  return new NamingParser(options, true, cutSubMessage, charsetOf, lineEnds ? "message" : null).parse(input);
}

/** How a whole message's raw 8-bit header bytes are read (header-text.ts), from its own header block. */
export function messageCharset(message: Uint8Array): HeaderCharset {
  const block = splitHeaderBlock(message);
  return headerCharset(block.fields, message, block.bodyStart);
}
