/**
 * Charset label → TextDecoder, for header bytes, encoded words and 8-bit header fallbacks.
 * Trusts nothing about the label: unknown labels fall back to windows-1252 (never throws).
 * Only labels the runtime accepted are cached, so the cache is bounded by the WHATWG label
 * list however many made-up labels a message carries.
 */

import { eucCnDecoder, ksx1001Decoder } from "./strict-euc.ts";
import { utf7Decoder } from "./utf7.ts";

/** What decoderFor hands out: a TextDecoder, or one of ours for a charset TextDecoder lacks. */
export interface BytesDecoder {
  decode(bytes?: Uint8Array): string;
}

/** UTF-7's labels (RFC 2152; IANA's alias; what Outlook writes with `x-`). */
const UTF7_LABELS = new Set(["utf-7", "unicode-1-1-utf-7", "csunicode11utf7", "x-utf-7", "utf7"]);

/** Whether `label` names UTF-7 (decoded by utf7.ts; TextDecoder does not know it). */
export function isUtf7(label: string | null | undefined): boolean {
  return UTF7_LABELS.has((label ?? "").trim().toLowerCase().split("*")[0] ?? "");
}

/** Aliases of the labels strict-euc.ts decodes (not TextDecoder labels). */
const EUC_CN = "euc-cn";
const KSX1001 = "ksx1001";
const STRICT_EUC: ReadonlyMap<string, BytesDecoder & { encoding: string }> = new Map([[EUC_CN, eucCnDecoder], [KSX1001, ksx1001Decoder]]);

/** Labels mail software writes that TextDecoder does not know, mapped to one it does (or EUC_CN). */
const CHARSET_ALIASES = new Map<string, string>([
  ["cp949", "euc-kr"],
  ["uhc", "euc-kr"],
  ["ks_c_5601", "euc-kr"],
  ["iso-2022-jp-1", "iso-2022-jp"],
  ["iso-2022-jp-2", "iso-2022-jp"],
  ["iso-2022-jp-3", "iso-2022-jp"],
  ["cp932", "shift_jis"],
  ["ms932", "shift_jis"],
  ["cp936", "gbk"],
  ["cp950", "big5"],
  ["utf8", "utf-8"],
  ["iso-8859-8-i", "iso-8859-8"],
  ["tis-620", "windows-874"],
  // Spellings Chinese, Korean, Japanese and Russian mailers write that the WHATWG list lacks
  // (Python's codecs know them): `=?EUC-CN?B?…?=` read as windows-1252 was mojibake that no
  // `subject contains 发票` rule matched. `_` for `-` (euc_kr, UTF_8) is tried in decoderFor.
  // EUC-CN proper, not GBK (strict-euc.ts): strictly GB2312's byte pairs, as Python reads them.
  ["euc-cn", EUC_CN],
  ["euccn", EUC_CN],
  ["gb2312-80", EUC_CN],
  ["gb2312-1980", EUC_CN],
  ["euckr", "euc-kr"],
  ["ksx1001", KSX1001],
  ["ks-x-1001", KSX1001],
  ["eucjp", "euc-jp"],
  ["ujis", "euc-jp"],
  ["shiftjis", "shift_jis"],
  ["big-5", "big5"],
  ["koi8r", "koi8-r"],
  ["win-1251", "windows-1251"],
  ["cp-1251", "windows-1251"],
]);

/** Longest label worth trying; real labels are under 30 characters. */
const MAX_CHARSET_LABEL_CHARS = 64;

const decoders = new Map<string, TextDecoder>();
const utf8Fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function tryDecoder(label: string): TextDecoder | null {
  const cached = decoders.get(label);
  if (cached) return cached;
  try {
    const decoder = new TextDecoder(label as ConstructorParameters<typeof TextDecoder>[0]);
    decoders.set(label, decoder);
    return decoder;
  } catch {
    return null;
  }
}

/**
 * UTF-16 reads ASCII text as CJK-looking code units. Only a label TextDecoder itself takes may
 * name it: `x-utf-16`, `UTF_16` or `utf_16be` are unknown to postal-mime and to Thunderbird,
 * which show such a part as windows-1252 (its ASCII words readable), so a `body` or `subject`
 * rule must read them that way too, not as 湐慥敳搠 from which no rule matches anything.
 */
const ASCII_UNSAFE = new Set(["utf-16le", "utf-16be"]);

/** The decoder `label` names (directly, without `x-`, with `-` for `_`, or by alias), or null. */
function knownDecoder(withoutLanguage: string): BytesDecoder & { encoding: string } | null {
  const direct = withoutLanguage ? tryDecoder(withoutLanguage) : null;
  if (direct) return direct;
  const stripped = withoutLanguage.replace(/^x-/, "");
  for (const name of new Set([stripped, stripped.replaceAll("_", "-")])) {
    const alias = CHARSET_ALIASES.get(name) ?? name;
    const strict = STRICT_EUC.get(alias);
    if (strict) return strict;
    const decoder = alias ? tryDecoder(alias) : null;
    if (decoder && !ASCII_UNSAFE.has(decoder.encoding)) return decoder;
  }
  return null;
}

function labelOf(label: string | null | undefined): string {
  const clean = (label ?? "").trim().toLowerCase().slice(0, MAX_CHARSET_LABEL_CHARS);
  return clean.split("*")[0] ?? ""; // RFC 2231 `charset*lang`
}

/** A decoder for `label`, or windows-1252 when the label is unknown or missing. */
export function decoderFor(label: string | null | undefined): BytesDecoder {
  const withoutLanguage = labelOf(label);
  if (UTF7_LABELS.has(withoutLanguage)) return utf7Decoder;
  return knownDecoder(withoutLanguage) ?? (tryDecoder("windows-1252") as TextDecoder);
}

/**
 * The standard name (`gbk`, `euc-kr`) of the charset `label` names by this module's aliases, or
 * null when it names none (or UTF-7, EUC-CN, KS X 1001: ownTextDecoder): what a body part's label is given as to postal-mime, whose
 * own table lacks some of those aliases (EUC-CN, GB2312-80, win-1251…), so that `body` reads
 * the text as the subject does.
 */
export function standardCharsetName(label: string | null | undefined): string | null {
  const withoutLanguage = labelOf(label);
  if (UTF7_LABELS.has(withoutLanguage)) return null;
  const decoder = knownDecoder(withoutLanguage);
  return decoder === null || STRICT_EUC.has(decoder.encoding) ? null : decoder.encoding;
}

/** Our own decoder for a body part in `label` (UTF-7, EUC-CN, KS X 1001), where postal-mime has no right one; null: postal-mime's (given standardCharsetName). */
export function ownTextDecoder(label: string | null | undefined): BytesDecoder | null {
  const withoutLanguage = labelOf(label);
  if (UTF7_LABELS.has(withoutLanguage)) return utf7Decoder;
  const decoder = knownDecoder(withoutLanguage);
  return decoder !== null && STRICT_EUC.has(decoder.encoding) ? decoder : null;
}

/**
 * Decodes header bytes: UTF-8 when they are valid UTF-8 (RFC 6532), otherwise with the
 * message's declared charset (legacy clients write raw EUC-KR / Shift_JIS headers), otherwise
 * mostly-UTF-8 with a stray bad byte as UTF-8, otherwise the charset `guess` names (asked only
 * then: the one a text part of the message declares), otherwise windows-1252.
 */
export function decodeHeaderBytes(bytes: Uint8Array, fallbackCharset: string | null, guess: () => string | null = () => null): string {
  try {
    const text = utf8Fatal.decode(bytes);
    return text.includes("\x1b$") ? (rawIso2022Jp(bytes) ?? text) : text;
  } catch {
    if (fallbackCharset === null) {
      const lossy = mostlyUtf8(bytes);
      if (lossy !== null) return lossy;
      return headerDecoderFor(guess()).decode(bytes);
    }
    return headerDecoderFor(fallbackCharset).decode(bytes);
  }
}

/** ISO-2022-JP's switch to JIS X 0208 (ESC $ B, or the older ESC $ @): two-byte kanji and kana follow. */
const ISO2022JP_TO_JIS = /\x1b\$[@B]/;

/**
 * 7-bit bytes with ISO-2022-JP escapes, unencoded (Japanese mailers write raw JIS headers and
 * file names, not RFC 2047 words), read as ISO-2022-JP as Japanese mail clients show them; null
 * when they have no switch to JIS X 0208 or are not valid ISO-2022-JP (left as they are). Read
 * as ASCII, `From: ESC$B;3ED B@O:ESC(B <a@example.jp>` was a group (`:`) and no From address at
 * all, so a `from` rule missed the sender, and the subject was `$B8+@Q=q` to `subject` rules.
 */
function rawIso2022Jp(bytes: Uint8Array): string | null {
  if (!ISO2022JP_TO_JIS.test(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1"))) return null;
  const text = decoderFor("iso-2022-jp").decode(bytes);
  return text.includes("\ufffd") ? null : text;
}

/**
 * decoderFor for raw 8-bit header bytes, but windows-1252 for UTF-16 (ASCII_UNSAFE): a header
 * is not UTF-16 whatever a part says, and read so, `Subject: Invoice f<FC>r you` of a message
 * whose text part was `charset=utf-16` became 䤠癮楯散… and no subject rule matched the
 * `Invoice` Python and postal-mime show.
 */
function headerDecoderFor(label: string | null): BytesDecoder {
  const decoder = decoderFor(label);
  return "encoding" in decoder && ASCII_UNSAFE.has(String(decoder.encoding)) ? decoderFor(null) : decoder;
}

const utf8Lossy = new TextDecoder("utf-8", { ignoreBOM: true });
/** Valid non-ASCII characters needed per broken sequence to read the bytes as damaged UTF-8. */
const UTF8_VALID_PER_BROKEN = 4;

/**
 * With no charset declared, UTF-8 with a stray bad byte (a name cut mid-character by a
 * mailer) reads as UTF-8 with one U+FFFD, as mail clients show it, not as windows-1252
 * mojibake of the whole field. Latin-1 text has no valid multi-byte sequences, so it still
 * falls through to windows-1252. Null: not mostly UTF-8.
 */
function mostlyUtf8(bytes: Uint8Array): string | null {
  const text = utf8Lossy.decode(bytes);
  let broken = 0;
  let valid = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0xfffd) broken++;
    else if (c > 0x7f) valid++;
  }
  return valid >= broken * UTF8_VALID_PER_BROKEN ? text : null;
}

/** How far into an HTML part its `<meta>` charset is looked for: the HTML standard's prescan length. */
const META_PRESCAN_BYTES = 1024;

/** A charset in a meta tag: its `charset` attribute, or the `charset=` in a `content` value. */
const META_CHARSET = /charset[\t\n\f\r ]*=[\t\n\f\r ]*["']?[\t\n\f\r ]*([a-z0-9._:-]{1,40})/i;

/**
 * The charset label of the first `<meta>` tag in `head` that names one, as a browser's prescan
 * finds it: comments and the insides of other tags (their attribute values) are skipped, and
 * `content=…charset=` counts only with `http-equiv="Content-Type"`. Read anywhere, a tag in a
 * comment (`<!-- <meta charset="gbk"> -->`) or an attribute (`alt="<meta charset=gbk>"`), which
 * browsers ignore, made a stray byte take the ASCII letter after it (`\xB0wire` read 皐ire) and a
 * body rule miss the word. Each character is looked at a bounded number of times.
 */
// Whitespace is the prescan's five ASCII bytes only: JS `\s` also took 0xA0 and 0x0B (latin1), so
// `<meta\xA0charset=gbk>`, no meta to a browser, made 0x81 take the `w` of `wire`.
function metaLabel(head: string): string | null {
  for (let i = head.indexOf("<"); i >= 0; i = head.indexOf("<", i)) {
    if (head.startsWith("<!--", i)) {
      // The first '>' after two '-' past the '<': '<!-->' closes itself, as in the prescan.
      const close = head.indexOf("-->", i + 2);
      if (close < 0) return null;
      i = close + 3;
      continue;
    }
    if (!/^<\/?[a-z]/i.test(head.slice(i, i + 3))) {
      // '<!', '</', '<?' not before a letter skip to the first '>', quotes or not; any other
      // '<' (text's '1 <" 2') is no tag: a quote after it opened none in a browser.
      if (!/^<[!/?]/.test(head.slice(i, i + 2))) {
        i += 1;
        continue;
      }
      const close = head.indexOf(">", i);
      if (close < 0) return null;
      i = close + 1;
      continue;
    }
    const meta = /^<meta[\t\n\f\r /]/i.test(head.slice(i, i + 6));
    // A tag's name runs to whitespace or '>' ('<meta' to its own end), then its attributes.
    let from = i + 5;
    if (!meta) for (from = i + 1; from < head.length && !PRESCAN_SPACE.includes(head[from]!) && head[from] !== ">"; from++);
    const tag = readAttributes(head, from);
    if (meta) {
      const label = metaTagLabel(tag.attributes);
      if (label !== null) return label;
    }
    if (tag.end < 0) return null;
    i = tag.end;
  }
  return null;
}

/** The whitespace of the HTML prescan: five ASCII bytes (not 0xA0 or 0x0B, which `\s` takes). */
const PRESCAN_SPACE = "\t\n\f\r ";

/** A charset label as the prescan may take it. */
const CHARSET_LABEL = /^[a-z0-9._:-]{1,40}$/i;

/** A meta tag's charset: its `charset` attribute, else with `http-equiv="Content-Type"` the one in its `content`. */
function metaTagLabel(attributes: ReadonlyMap<string, string>): string | null {
  // ASCII whitespace only around the label, as the Encoding standard's "get an encoding" strips
  // it (trim() also takes 0xA0, which makes `charset=\xA0gbk` no label to a browser).
  const charset = attributes.get("charset")?.replace(/^[\t\n\f\r ]+|[\t\n\f\r ]+$/g, "");
  if (charset !== undefined) return CHARSET_LABEL.test(charset) ? charset : null;
  if (attributes.get("http-equiv")?.trim().toLowerCase() !== "content-type") return null;
  return META_CHARSET.exec(attributes.get("content") ?? "")?.[1] ?? null;
}

/**
 * The attributes of a tag from `from` (past its name) to its '>', read as the HTML prescan's "get
 * an attribute" reads them: a quote opens a value only right after '=' (`x=y"z` is a value with a
 * quote in it), an unquoted value ends at whitespace or '>'. The first of a repeated name counts.
 * `end`: the index past the '>', or -1 when the tag does not end. Each character is read once.
 */
function readAttributes(text: string, from: number): { end: number; attributes: Map<string, string> } {
  const attributes = new Map<string, string>();
  let j = from;
  const space = (k: number): boolean => k < text.length && PRESCAN_SPACE.includes(text[k]!);
  for (;;) {
    while (space(j) || text[j] === "/") j++;
    if (j >= text.length) return { end: -1, attributes };
    if (text[j] === ">") return { end: j + 1, attributes };
    const nameStart = j;
    // A name takes a leading '=' (the prescan's rule), so this always advances.
    j++;
    while (j < text.length && !space(j) && text[j] !== "/" && text[j] !== ">" && text[j] !== "=") j++;
    const name = text.slice(nameStart, j).toLowerCase();
    while (space(j)) j++;
    let value = "";
    if (text[j] === "=") {
      j++;
      while (space(j)) j++;
      const quote = text[j];
      if (quote === '"' || quote === "'") {
        const close = text.indexOf(quote, j + 1);
        if (close < 0) return { end: -1, attributes };
        value = text.slice(j + 1, close);
        j = close + 1;
      } else {
        const valueStart = j;
        while (j < text.length && !space(j) && text[j] !== ">") j++;
        value = text.slice(valueStart, j);
      }
    }
    if (!attributes.has(name)) attributes.set(name, value);
  }
}

/**
 * The charset an HTML part names in a `<meta>` tag, for a part whose Content-Type names none
 * (postal-mime then reads UTF-8): a Shift_JIS or GBK page came out as U+FFFD, so `body` rules
 * missed its words, where mail clients honour the tag as browsers do. Only for bytes that are
 * not valid UTF-8 (valid UTF-8 read otherwise would be garbled); a UTF-16 label is ignored
 * (the HTML standard reads it as UTF-8 there). Null: none, or none worth applying.
 */
export function htmlMetaCharset(content: Uint8Array): string | null {
  const head = Buffer.from(content.buffer, content.byteOffset, Math.min(content.byteLength, META_PRESCAN_BYTES)).toString("latin1");
  const label = metaLabel(head);
  if (label === null) return null;
  const standard = standardCharsetName(label);
  if (standard === null || standard.startsWith("utf-")) return null;
  try {
    utf8Fatal.decode(content);
    return null;
  } catch {
    return standard;
  }
}
