/**
 * HTML → plain text for the `body` fact when a message has only an HTML part.
 * One forward pass: tags are skipped to the next '>' outside a quoted value, comments to '-->' (or '--!>'), script/style/title
 * content to its closing tag, found by indexOf from a position that only moves forward, so
 * the cost is linear whatever the markup (unclosed '<', '<!--', '<script' included). The
 * searches for '&' and an entity's end are bounded the same way (a cached next '&', a name
 * read for at most MAX_ENTITY_CHARS): unbounded, each text run or '&' scanned on to the end of
 * the document, and 4 MB of `<b>x` or `a & b` took seconds.
 * Block elements become line breaks, whitespace runs collapse, character references are decoded
 * as HTML's tokenizer reads them in text (every name of HTML's list, case-sensitively, the
 * longest first), `xmp` and `plaintext` content is text as written, `textarea` content text
 * with its references decoded.
 * Output stops at `maxChars`. Never throws.
 */
import { LEGACY_NAMES, NAMED_REFERENCES } from "./html-entity-table.ts";

const BLOCK_TAGS = new Set([
  "br", "p", "div", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6",
  "hr", "blockquote", "pre", "section", "article", "header", "footer", "dt", "dd", "center",
]);
const CELL_TAGS = new Set(["td", "th"]);
/**
 * Elements whose content a browser shows as it is written, tags, comments and entities included
 * (HTML's RAWTEXT `xmp`; `plaintext`, which no end tag closes): read as markup, `<xmp>if a<b send
 * the wire transfer today</xmp>` lost its words to a `<b …>` tag a browser never saw.
 */
const RAW_TEXT_TAGS = new Set(["xmp", "plaintext"]);
/**
 * Elements whose content a browser shows as text with its character references decoded, but no
 * tags (HTML's RCDATA `textarea`; `title` is RCDATA too but not shown in the body): read as
 * markup, `<textarea>wire <b>now</b> &amp; today</textarea>` lost the words to tags a reader sees as text.
 */
const RCDATA_TAGS = new Set(["textarea"]);
/**
 * Elements whose content is not text. Not `noscript`: a mail reader runs no script, so it shows
 * what `noscript` holds (a browser with scripting off does the same), and skipped, text there
 * was missed by `body` rules. Not `head` either: its end tag may be left out (HTML 13.1.2.4),
 * and a browser ends it at the first thing a head cannot hold (text, `<body>`, `<p>`), so
 * `<head><title>Invoice</title><body>Please wire…` shows its words; skipped to a `</head>` that
 * never came, the whole body was "" to the rules. What a head holds that is no text is skipped
 * on its own (its title, style, script, template, noframes) or is a tag (meta, link, base).
 * `noframes` is hidden in a browser wherever it stands (its content is raw text, not shown).
 */
const SKIPPED_CONTENT_TAGS = new Set(["script", "style", "title", "template", "noframes"]);

/**
 * HTML's named references, all of them (the WHATWG list: html-entity-table.ts), by their
 * case-sensitive names. Not only HTML 4's: PHP's htmlentities() writes Greek text as `&tau;&alpha;`,
 * newsletter tools write `&period;` and `&Tab;`, and a name read as a shorter one (`&centerdot;`
 * as `&cent;` and `erdot;`) put text no reader sees in the body. What a reference shows as
 * (shownAs) is its value, except that a space of any width is a space and an invisible character
 * (a soft hyphen, a zero-width joiner or space, a word joiner) is nothing, so `wi&shy;re` is one word.
 */
const NAMED = new Map<string, string>();
for (let i = 0, words = NAMED_REFERENCES.split(" "); i + 1 < words.length; i += 2) NAMED.set(words[i] as string, shownAs(words[i + 1] as string));

function shownAs(value: string): string {
  if (/^\s+$/u.test(value)) return " ";
  return /^[\u00ad\u200b-\u200d\u2060-\u2063]+$/u.test(value) ? "" : value;
}

/**
 * The names a browser decodes in text without their ';' (HTML 5's legacy ones: the Latin-1 set,
 * amp, lt, gt, quot and a few capitalized): `Bonjour&nbspmonde`, `&copy2024` and `a &amp b` show
 * as `Bonjour monde`, `©2024` and `a & b`, and a rule must read them so.
 */
const LEGACY = new Set(LEGACY_NAMES.split(" "));
const LEGACY_NAME_CHARS = Math.max(...[...LEGACY].map((name) => name.length));

/**
 * Longest name worth reading after '&' (`CounterClockwiseContourIntegral`, 31): a run of letters
 * and digits is looked at no further, so a document of '&' and long words costs at most this per '&'.
 */
const MAX_ENTITY_CHARS = Math.max(...[...NAMED.keys()].map((name) => name.length));

function decodeEntity(html: string, at: number): { text: string; end: number } | null {
  return numericReference(html, at) ?? namedReference(html, at);
}

/** `&#` and digits (`x` and hex digits), with or without ';': sticky, so it reads the digits and no further. */
const NUMERIC_REFERENCE = /#(?:[xX]([0-9a-fA-F]+)|([0-9]+));?/y;

/**
 * Windows-1252's characters for the C1 code points a numeric reference names (HTML's table): a
 * browser shows `&#128;` as € and `&#150;` as –, not as invisible control characters.
 */
const C1_REMAP = "\u20ac\u0081\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\u008d\u017d\u008f\u0090\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u009d\u017e\u0178";

/**
 * A numeric reference at `at`, as a browser reads one: any number of digits (leading zeros
 * included: `V&#00000105;agra` shows as Viagra, and read as 7 digits at most it hid the word),
 * ';' optional, a value past U+10FFFF, 0 or a surrogate as U+FFFD, C1 as Windows-1252 (C1_REMAP).
 * Linear in its digits; null when `&#` is followed by none.
 */
function numericReference(html: string, at: number): { text: string; end: number } | null {
  NUMERIC_REFERENCE.lastIndex = at + 1;
  const number = NUMERIC_REFERENCE.exec(html);
  if (!number) return null;
  const hex = number[1] !== undefined;
  const digits = (number[1] ?? number[2] ?? "").replace(/^0+/, "");
  const code = digits.length > (hex ? 6 : 7) ? -1 : digits === "" ? 0 : Number.parseInt(digits, hex ? 16 : 10);
  const valid = code > 0 && code <= 0x10ffff && (code < 0xd800 || code > 0xdfff);
  const text = !valid ? "\ufffd" : code >= 0x80 && code <= 0x9f ? (C1_REMAP[code - 0x80] as string) : String.fromCodePoint(code);
  return { text, end: NUMERIC_REFERENCE.lastIndex };
}

const isAsciiAlphanumeric = (c: number): boolean => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);

/**
 * A named reference at `at`, read as HTML's tokenizer reads one in text: the longest name of the
 * list that the input starts with. That is `&name;` when the whole run of letters and digits
 * after '&', with a ';' after it, is a name (`&centerdot;` is ·), else the longest legacy name
 * the run starts with (`&notit;` is ¬it;, `&ampx` is &x). Null when there is none: the '&' is text.
 */
function namedReference(html: string, at: number): { text: string; end: number } | null {
  const limit = Math.min(html.length, at + 1 + MAX_ENTITY_CHARS);
  let end = at + 1;
  while (end < limit && isAsciiAlphanumeric(html.charCodeAt(end))) end++;
  const named = html.charCodeAt(end) === 0x3b ? NAMED.get(html.slice(at + 1, end)) : undefined;
  if (named !== undefined) return { text: named, end: end + 1 };
  for (let length = Math.min(LEGACY_NAME_CHARS, end - at - 1); length >= 2; length--) {
    const name = html.slice(at + 1, at + 1 + length);
    if (LEGACY.has(name)) return { text: NAMED.get(name) as string, end: at + 1 + length };
  }
  return null;
}

/** Lower-case tag name starting at `at` (just after '<' or '</'). */
function tagName(html: string, at: number): string {
  let end = at;
  while (end < html.length && end - at < 16 && /[A-Za-z0-9]/.test(html[end] as string)) end++;
  return html.slice(at, end).toLowerCase();
}

/** Collects output text with whitespace collapsed. */
class TextSink {
  private parts: string[] = [];
  length = 0;
  private pendingSpace = false;
  private newlines = 0;

  constructor(private readonly maxChars: number) {}

  get full(): boolean {
    return this.length >= this.maxChars;
  }

  text(chunk: string): void {
    for (const piece of chunk.split(/([ \t\r\n\f\v\u00a0]+)/)) {
      if (this.full) return;
      if (piece === "") continue;
      if (/^[ \t\r\n\f\v\u00a0]+$/.test(piece)) {
        this.pendingSpace = true;
        continue;
      }
      if (this.newlines > 0) this.push("\n".repeat(this.newlines));
      else if (this.pendingSpace && this.length > 0) this.push(" ");
      this.newlines = 0;
      this.pendingSpace = false;
      this.push(piece);
    }
  }

  lineBreak(): void {
    if (this.length > 0) this.newlines = Math.min(2, this.newlines + 1);
    this.pendingSpace = false;
  }

  space(): void {
    this.pendingSpace = true;
  }

  private push(piece: string): void {
    this.parts.push(piece);
    this.length += piece.length;
  }

  result(): string {
    return this.parts.join("").slice(0, this.maxChars);
  }
}

/** The closing `</name ...>` at or after `from`: its start and the position after it (both the end of the input when there is none). */
function closingTag(html: string, from: number, name: string): { start: number; end: number } {
  let search = from;
  for (;;) {
    const close = html.indexOf("</", search);
    if (close < 0) return { start: html.length, end: html.length };
    if (tagName(html, close + 2) === name) {
      const gt = html.indexOf(">", close);
      return { start: close, end: gt < 0 ? html.length : gt + 1 };
    }
    search = close + 2;
  }
}

/** Position after the closing `</name ...>` at or after `from`, or the end of the input. */
function skipElementContent(html: string, from: number, name: string): number {
  return closingTag(html, from, name).end;
}

/**
 * Whether the '<' at `at` opens markup: a tag (a letter next), an end tag, a comment or
 * declaration (`/`, `!`, `?`). Any other '<' is text in a browser; read as a tag, `I <3 you, wire
 * the money</p>` lost everything to the next '>' and a `body` rule missed words the reader sees.
 */
function opensMarkup(html: string, at: number): boolean {
  const next = html.charCodeAt(at + 1);
  return (next >= 0x41 && next <= 0x5a) || (next >= 0x61 && next <= 0x7a) || next === 0x2f || next === 0x21 || next === 0x3f;
}

const isAsciiLetter = (c: number): boolean => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
/** HTML's whitespace between attributes (CR too: line ends are not normalized here). */
const isTagSpace = (c: number): boolean => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d;

/** States of HTML's tokenizer inside a tag that decide where it ends (markupEnd). */
const enum Tag { Name, BeforeAttribute, AttributeName, AfterAttributeName, BeforeValue, UnquotedValue }

/**
 * The '>' that ends the markup opened at `lt` (-1: none, the rest is markup). A tag or end tag
 * (a letter after `<` or `</`) ends at the first '>' outside a quoted attribute value, as
 * HTML's tokenizer reads it: cut at a '>' inside `title=">"`, `Vi<b title=">">agra` read as
 * `Vi">agra` and a body rule missed a word the reader sees. A quote opens a value only after an
 * attribute's name and '=' (in `<b x'>`, `<b ="x>`, `<b="x>` it is part of a name). Other markup
 * (`<!x`, `<?x`, `</3`) ends at the first '>'. Linear: each character of the tag is looked at
 * once, a quoted value skipped by indexOf.
 */
function markupEnd(html: string, lt: number): number {
  let i = html[lt + 1] === "/" ? lt + 2 : lt + 1;
  if (!isAsciiLetter(html.charCodeAt(i))) return html.indexOf(">", lt + 1);
  let state = Tag.Name;
  for (; i < html.length; i++) {
    const c = html.charCodeAt(i);
    if (c === 0x3e) return i;
    const space = isTagSpace(c);
    if (state === Tag.BeforeValue && (c === 0x22 || c === 0x27)) {
      i = html.indexOf(c === 0x22 ? '"' : "'", i + 1);
      if (i < 0) return -1;
      state = Tag.BeforeAttribute;
    } else if (state === Tag.Name || state === Tag.UnquotedValue) {
      if (space || c === 0x2f) state = Tag.BeforeAttribute;
    } else if (state === Tag.BeforeValue) {
      if (!space) state = Tag.UnquotedValue;
    } else if (c === 0x2f) state = Tag.BeforeAttribute;
    else if (state === Tag.BeforeAttribute) {
      if (!space) state = Tag.AttributeName;
    } else if (c === 0x3d) state = Tag.BeforeValue;
    else if (space) state = Tag.AfterAttributeName;
    else state = Tag.AttributeName;
  }
  return -1;
}

/**
 * Where the comments of `html` end, as a browser's parser ends them: `<!-->` and `<!--->` are
 * whole (empty) comments, and `--!>` closes one as `-->` does. Read to the next `-->` only,
 * `<!-->Please send the wire transfer<!-- -->` hid words every mail client shows. The next
 * `-->` and `--!>` are each looked for once and kept (they only move forward): looked for again
 * at each comment, a document of many comments closed by one and without the other was scanned
 * to its end each time.
 */
function commentEnds(html: string): { end(from: number): number } {
  const next = { "-->": -2, "--!>": -2 }; // indexOf from some earlier position; -1: there is none further
  const find = (close: keyof typeof next, from: number): number => {
    if (next[close] !== -1 && next[close] < from) next[close] = html.indexOf(close, from);
    return next[close];
  };
  return {
    /** Position after the comment whose text starts at `from` (just after `<!--`). */
    end(from: number): number {
      if (html.startsWith(">", from)) return from + 1;
      if (html.startsWith("->", from)) return from + 2;
      const dashes = find("-->", from);
      const bang = find("--!>", from);
      if (dashes >= 0 && (bang < 0 || dashes < bang)) return dashes + 3;
      return bang >= 0 ? bang + 4 : html.length;
    },
  };
}

/** Converts HTML to readable plain text of at most `maxChars` characters. */
export function htmlToText(html: string, maxChars: number): string {
  const sink = new TextSink(maxChars);
  let pos = 0;
  let textFrom = 0;
  let nextAmp = -2; // html.indexOf("&") from some earlier position; -1: there is none further
  const comments = commentEnds(html);
  const flushText = (end: number): void => {
    let run = textFrom;
    while (run < end && !sink.full) {
      if (nextAmp !== -1 && nextAmp < run) nextAmp = html.indexOf("&", run);
      const amp = nextAmp;
      if (amp < 0 || amp >= end) {
        sink.text(html.slice(run, end));
        break;
      }
      sink.text(html.slice(run, amp));
      const entity = decodeEntity(html, amp);
      sink.text(entity ? entity.text : "&");
      run = entity ? entity.end : amp + 1;
    }
  };
  while (pos < html.length && !sink.full) {
    const lt = html.indexOf("<", pos);
    if (lt < 0) break;
    if (!opensMarkup(html, lt)) {
      // `I <3 you`, `price < 5`: text to a browser (HTML's tag open state), flushed with what follows.
      pos = lt + 1;
      continue;
    }
    flushText(lt);
    if (html.startsWith("<!--", lt)) {
      pos = textFrom = comments.end(lt + 4);
      continue;
    }
    const gt = markupEnd(html, lt);
    if (gt < 0) {
      pos = textFrom = html.length; // an unclosed '<' and everything after it is markup
      break;
    }
    const closing = html[lt + 1] === "/";
    const name = tagName(html, lt + (closing ? 2 : 1));
    if (BLOCK_TAGS.has(name) || RAW_TEXT_TAGS.has(name) || RCDATA_TAGS.has(name)) sink.lineBreak();
    else if (CELL_TAGS.has(name)) sink.space();
    if (!closing && RAW_TEXT_TAGS.has(name)) {
      // As written, to its end tag (`plaintext` has none: the rest of the document).
      const close = name === "plaintext" ? { start: html.length, end: html.length } : closingTag(html, gt + 1, name);
      sink.text(html.slice(gt + 1, close.start));
      sink.lineBreak();
      pos = textFrom = close.end;
      continue;
    }
    if (!closing && RCDATA_TAGS.has(name)) {
      // Text with references decoded, to its end tag (none: the rest of the document).
      const close = closingTag(html, gt + 1, name);
      textFrom = gt + 1;
      flushText(close.start);
      sink.lineBreak();
      pos = textFrom = close.end;
      continue;
    }
    pos = textFrom = !closing && SKIPPED_CONTENT_TAGS.has(name) ? skipElementContent(html, gt + 1, name) : gt + 1;
  }
  if (!sink.full) flushText(html.length);
  return sink.result();
}
