/**
 * A MIME part's header lines that are not UTF-8, read in the message's charset (header-text.ts
 * HeaderCharset: the top-level Content-Type's, else the first text part's), as its top-level
 * header is. postal-mime decodes every part header line as UTF-8, so a raw Shift_JIS, EUC-KR,
 * GBK or Big5 file name from an old mailer (Outlook Express, webmail and ERP systems in those
 * locales write `filename="<raw bytes>"`) came out as U+FFFD (`���Ϗ�.exe`) and an `attachment
 * contains 見積` rule missed what Thunderbird and Outlook in that locale show. The charset is a
 * guess, so the names of this reading are added to postal-mime's, never put in their place
 * (part-names.ts): a stray lead byte in the guessed charset takes the ASCII letter after it.
 * Bounded by postal-mime's part header cap (maxHeadersSize): each recorded line is decoded once
 * per read; linear; never throws.
 */
import { decodeHeaderBytes } from "./charset.ts";
import { decodeEncodedWords } from "./encoded-words.ts";
import type { HeaderCharset } from "./header-text.ts";
import { parameters, parameterValues } from "./mime-parameters.ts";

/** A header field of a part as postal-mime splits it: lower-case key, unfolded value. */
export interface PartField {
  key: string;
  value: string;
}

/** A part's raw header lines that are not UTF-8, by their index in postal-mime's `headerLines`. */
export type RawPartLines = Map<number, Uint8Array>;

const utf8Fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Whether postal-mime misreads `line`: bytes that UTF-8 does not read (it makes them U+FFFD), or
 * an escape of raw ISO-2022-JP (it keeps them as ASCII: charset.ts decodeHeaderBytes reads them).
 */
export function notUtf8(line: Uint8Array): boolean {
  let high = false;
  for (let i = 0; i < line.length && !high; i++) {
    if (line[i] === 0x1b && line[i + 1] === 0x24) return true;
    high = (line[i] as number) >= 0x80;
  }
  if (!high) return false;
  try {
    utf8Fatal.decode(line);
    return false;
  } catch {
    return true;
  }
}

function isWsp(code: number): boolean {
  return code === 0x20 || code === 0x09;
}

function trimWsp(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && isWsp(text.charCodeAt(start))) start++;
  while (end > start && isWsp(text.charCodeAt(end - 1))) end--;
  return text.slice(start, end);
}

/**
 * The part's fields with the `raw` lines read in `charset`, the other lines as postal-mime
 * decoded them (`headerLines`), folded and unfolded as postal-mime's processHeaders does: a line
 * starting with a space or tab continues the field above, CRs and LFs in a value become a space.
 */
export function charsetFields(headerLines: readonly string[], raw: RawPartLines, charset: HeaderCharset): PartField[] {
  const folded: string[][] = [];
  headerLines.forEach((line, i) => {
    const bytes = raw.get(i);
    const text = bytes ? decodeHeaderBytes(bytes, charset.declared, charset.ofParts) : line;
    const last = folded[folded.length - 1];
    if (last && isWsp(text.charCodeAt(0))) last.push(text);
    else folded.push([text]);
  });
  return folded.map((parts) => {
    const line = parts.join("");
    const sep = line.indexOf(":");
    return { key: trimWsp(sep < 0 ? line : line.slice(0, sep)).toLowerCase(), value: sep < 0 ? "" : trimWsp(line.slice(sep + 1).replace(/[\r\n]+/g, " ")) };
  });
}

/**
 * The name postal-mime's collectAttachment would pick from `fields`: the first Content-Disposition's
 * `filename`, else the first Content-Type's `name` (the extended RFC 2231 form over the plain one),
 * encoded words decoded; "" when none.
 */
export function chosenName(fields: readonly PartField[]): string {
  for (const [key, base] of [["content-disposition", "filename"], ["content-type", "name"]] as const) {
    const field = fields.find((f) => f.key === key);
    if (!field) continue;
    const { plain, extended } = parameterValues(parameters(field.value), base);
    const value = extended[0] || plain[0] || "";
    if (value) return decodeEncodedWords(value);
  }
  return "";
}
