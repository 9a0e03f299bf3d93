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
import { decoderFor } from "./charset.ts";
import { decodeEncodedWords, hexValue } from "./encoded-words.ts";

/** A header field of a part as postal-mime splits it: lower-case key, unfolded value. */
interface PartField {
  key: string;
  value: string;
}

/** The part as postal-mime's collectAttachment gets it (only what is read here). */
interface PartNode {
  headers: PartField[];
  contentType: { parsed: { value: string } };
  contentDisposition: { parsed: { value: string } };
}

/**
 * An attachment with every name its part gives (`names`, decoded, possibly empty);
 * `inlineText`: a named text part that postal-mime read as body text (no content here).
 */
export type NamedAttachment = Attachment & { names?: string[]; inlineText?: boolean };

/** A parse whose attachments carry their names. */
export type NamedEmail = Email & { attachments: NamedAttachment[] };

interface Parameter {
  key: string;
  value: string;
}

/** Index of the first `;` at or after `from` outside a quoted string, or the length. */
function nextSemicolon(value: string, from: number): number {
  let quoted = false;
  for (let i = from; i < value.length; i++) {
    const c = value[i];
    if (quoted && c === "\\") i++;
    else if (c === '"') quoted = !quoted;
    else if (!quoted && c === ";") return i;
  }
  return value.length;
}

/** An unquoted value without its comments (`x.exe (comment)`), as postal-mime drops them; `a(1).exe` keeps its parentheses. */
function tokenValue(text: string): string {
  let out = "";
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "(" && (depth > 0 || i === 0 || text[i - 1] === " " || text[i - 1] === "\t")) depth++;
    else if (c === ")" && depth > 0) depth--;
    else if (depth === 0) out += c;
  }
  return out.trim();
}

/** The parameters of a structured field value (`type; key=value; key="quoted"`), in order, duplicates kept. */
function parameters(value: string): Parameter[] {
  const params: Parameter[] = [];
  for (let at = nextSemicolon(value, 0); at < value.length; ) {
    let i = at + 1;
    while (i < value.length && value[i] !== "=" && value[i] !== ";") i++;
    const key = value.slice(at + 1, i).trim().toLowerCase();
    if (i >= value.length || value[i] === ";") {
      at = i;
      continue;
    }
    i++;
    while (value[i] === " " || value[i] === "\t") i++;
    if (value[i] === '"') {
      // Backslash escapes only inside the quotes: unquoted `C:\temp\x.exe` keeps its backslashes.
      const chars: string[] = [];
      for (i++; i < value.length && value[i] !== '"'; i++) {
        if (value[i] === "\\" && i + 1 < value.length) i++;
        chars.push(value[i] ?? "");
      }
      params.push({ key, value: chars.join("") });
      at = nextSemicolon(value, i + 1);
    } else {
      const end = value.indexOf(";", i);
      at = end < 0 ? value.length : end;
      params.push({ key, value: tokenValue(value.slice(i, at)) });
    }
  }
  return params;
}

/** `%XX` escapes as bytes, any other character as its UTF-8 bytes. */
function percentBytes(text: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 0x25 && i + 2 < text.length && hexValue(text.charCodeAt(i + 1)) >= 0 && hexValue(text.charCodeAt(i + 2)) >= 0) {
      out.push(hexValue(text.charCodeAt(i + 1)) * 16 + hexValue(text.charCodeAt(i + 2)));
      i += 2;
    } else if (code < 0x80) {
      out.push(code);
    } else {
      for (const byte of Buffer.from(text[i] ?? "", "utf8")) out.push(byte);
    }
  }
  return Uint8Array.from(out);
}

interface Section {
  nr: number;
  value: string;
  encoded: boolean;
}

/** RFC 2231 sections joined: adjacent encoded ones decoded together (a character may span two). */
function joinSections(sections: Section[]): string {
  sections.sort((a, b) => a.nr - b.nr);
  let charset = "utf-8";
  const first = sections[0];
  if (first?.encoded) {
    const quote = first.value.indexOf("'");
    const second = quote < 0 ? -1 : first.value.indexOf("'", quote + 1);
    if (second >= 0) {
      charset = first.value.slice(0, quote) || "utf-8";
      first.value = first.value.slice(second + 1);
    }
  }
  const decoder = decoderFor(charset);
  let result = "";
  let pending = "";
  for (const section of sections) {
    if (section.encoded) {
      pending += section.value;
      continue;
    }
    if (pending) result += decoder.decode(percentBytes(pending));
    pending = "";
    result += section.value;
  }
  if (pending) result += decoder.decode(percentBytes(pending));
  return result;
}

/**
 * The names parameter `base` gives in one field: the plain value(s), the extended value
 * (`base*=`) and the sections (`base*0=`, `base*1*=`…) joined, each decoded on its own.
 */
function namesOf(params: Parameter[], base: string): string[] {
  const names: string[] = [];
  const sections: Section[] = [];
  const numbers = new Set<number>();
  for (const { key, value } of params) {
    if (key === base) {
      names.push(value);
    } else if (key === `${base}*`) {
      names.push(joinSections([{ nr: 0, value, encoded: true }]));
    } else if (key.startsWith(`${base}*`)) {
      const match = /^(\d{1,6})(\*?)$/.exec(key.slice(base.length + 1));
      if (!match) continue;
      const nr = Number(match[1]);
      if (numbers.has(nr)) continue; // a repeated section: the first one, as postal-mime takes
      numbers.add(nr);
      sections.push({ nr, value, encoded: match[2] === "*" });
    }
  }
  if (sections.length > 0) names.push(joinSections(sections));
  return names.map(decodeEncodedWords);
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

type CollectAttachment = (this: PostalMime, node: PartNode, ...rest: unknown[]) => void;
type IsInlineTextNode = (this: PostalMime, node: PartNode) => boolean;

const hooks = PostalMime.prototype as unknown as { collectAttachment?: CollectAttachment; isInlineTextNode?: IsInlineTextNode };
const collectAttachment = hooks.collectAttachment;
const isInlineTextNode = hooks.isInlineTextNode;
// An upgrade that renamed a hook would silently hide names from the rules again: fail at load instead.
if (typeof collectAttachment !== "function" || typeof isInlineTextNode !== "function") {
  throw new Error("postal-mime has no collectAttachment / isInlineTextNode: part names cannot be read");
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

  collectAttachment(node: PartNode, ...rest: unknown[]): void {
    const before = this.attachments.length;
    (collectAttachment as CollectAttachment).call(this, node, ...rest);
    const attachment = this.attachments[this.attachments.length - 1];
    if (attachment && this.attachments.length > before) attachment.names = partNames(node.headers);
  }

  isInlineTextNode(node: PartNode): boolean {
    const inline = (isInlineTextNode as IsInlineTextNode).call(this, node);
    const names = inline ? partNames(node.headers) : [];
    if (names.length > 0) {
      const disposition = node.contentDisposition.parsed.value || null;
      this.attachments.push({ filename: null, names, mimeType: node.contentType.parsed.value, disposition, content: new ArrayBuffer(0), inlineText: true });
    }
    return inline;
  }
}

/** PostalMime.parse, with `names` on each attachment. */
export async function parseNamingParts(input: Uint8Array, options: ConstructorParameters<typeof PostalMime>[0]): Promise<NamedEmail> {
  return new NamingParser(options).parse(input);
}
