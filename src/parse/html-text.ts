/**
 * HTML → plain text for the `body` fact when a message has only an HTML part.
 * One forward pass: tags are skipped to the next '>' outside a quoted value, comments to '-->' (or '--!>'), script/style/head
 * content to its closing tag, found by indexOf from a position that only moves forward, so
 * the cost is linear whatever the markup (unclosed '<', '<!--', '<script' included). The
 * searches for '&' and an entity's ';' are bounded the same way (a cached next '&', a ';'
 * looked for only within MAX_ENTITY_CHARS): unbounded, each text run or '&' scanned on to
 * the end of the document, and 4 MB of `<b>x` or `a & b` took seconds.
 * Block elements become line breaks, whitespace runs collapse, common entities are
 * decoded (by their case-sensitive names), `xmp` and `plaintext` content is text as written.
 * Output stops at `maxChars`. Never throws.
 */

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
/** Elements whose content is not text. */
const SKIPPED_CONTENT_TAGS = new Set(["script", "style", "head", "title", "template", "noscript"]);

const NAMED_ENTITIES: Record<string, string> = {
  amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: " ", copy: "©", reg: "®", trade: "™",
  hellip: "…", mdash: "—", ndash: "–", lsquo: "‘", rsquo: "’", ldquo: "“", rdquo: "”", bull: "•",
  middot: "·", euro: "€", pound: "£", yen: "¥", cent: "¢", laquo: "«", raquo: "»", deg: "°",
  times: "×", divide: "÷", shy: "", zwnj: "", zwj: "", ensp: " ", emsp: " ", thinsp: " ",
  OElig: "Œ", oelig: "œ", Scaron: "Š", scaron: "š", Yuml: "Ÿ", sbquo: "‚", bdquo: "„",
  // The capitalized names HTML has beside these (its list is case-sensitive: `&NBSP;` is no entity).
  AMP: "&", LT: "<", GT: ">", QUOT: '"', COPY: "©", REG: "®", TRADE: "™",
};

/**
 * The HTML 4 Latin-1 entities, U+00A0 to U+00FF in order. Mail clients and newsletter tools
 * write accented letters this way (`f&uuml;r`, `caf&eacute;`); a `body` rule written in plain
 * text must still match them.
 */
const LATIN1_ENTITY_NAMES = (
  "nbsp iexcl cent pound curren yen brvbar sect uml copy ordf laquo not shy reg macr " +
  "deg plusmn sup2 sup3 acute micro para middot cedil sup1 ordm raquo frac14 frac12 frac34 iquest " +
  "Agrave Aacute Acirc Atilde Auml Aring AElig Ccedil Egrave Eacute Ecirc Euml Igrave Iacute Icirc Iuml " +
  "ETH Ntilde Ograve Oacute Ocirc Otilde Ouml times Oslash Ugrave Uacute Ucirc Uuml Yacute THORN szlig " +
  "agrave aacute acirc atilde auml aring aelig ccedil egrave eacute ecirc euml igrave iacute icirc iuml " +
  "eth ntilde ograve oacute ocirc otilde ouml divide oslash ugrave uacute ucirc uuml yacute thorn yuml"
).split(" ");
LATIN1_ENTITY_NAMES.forEach((name, i) => (NAMED_ENTITIES[name] ??= String.fromCharCode(0xa0 + i)));

/**
 * HTML 4's Greek letters, in code point order from U+0391 and U+03B1 (`_`: U+03A2 has no letter,
 * its small one is the final sigma). PHP's htmlentities() writes Greek text this way (`&Alpha;`…),
 * so a newsletter's whole body can be entities: left as they were, `&tau;&alpha;` hid the word τα.
 */
"Alpha Beta Gamma Delta Epsilon Zeta Eta Theta Iota Kappa Lambda Mu Nu Xi Omicron Pi Rho _ Sigma Tau Upsilon Phi Chi Psi Omega"
  .split(" ")
  .forEach((name, i) => {
    if (name === "_") return;
    NAMED_ENTITIES[name] ??= String.fromCharCode(0x391 + i);
    NAMED_ENTITIES[name.toLowerCase()] ??= String.fromCharCode(0x3b1 + i);
  });

/** The rest of HTML 4's entities (symbols, arrows, math), with HTML 5's values (`lang`, `rang`). */
const HTML4_SYMBOLS =
  "sigmaf ς thetasym ϑ upsih ϒ piv ϖ fnof ƒ circ ˆ tilde ˜ lrm \u200e rlm \u200f dagger † Dagger ‡ permil ‰ lsaquo ‹ rsaquo › " +
  "prime ′ Prime ″ oline ‾ frasl ⁄ weierp ℘ image ℑ real ℜ alefsym ℵ larr ← uarr ↑ rarr → darr ↓ harr ↔ crarr ↵ " +
  "lArr ⇐ uArr ⇑ rArr ⇒ dArr ⇓ hArr ⇔ forall ∀ part ∂ exist ∃ empty ∅ nabla ∇ isin ∈ notin ∉ ni ∋ prod ∏ sum ∑ " +
  "minus − lowast ∗ radic √ prop ∝ infin ∞ ang ∠ and ∧ or ∨ cap ∩ cup ∪ int ∫ there4 ∴ sim ∼ cong ≅ asymp ≈ ne ≠ " +
  "equiv ≡ le ≤ ge ≥ sub ⊂ sup ⊃ nsub ⊄ sube ⊆ supe ⊇ oplus ⊕ otimes ⊗ perp ⊥ sdot ⋅ lceil ⌈ rceil ⌉ lfloor ⌊ " +
  "rfloor ⌋ lang ⟨ rang ⟩ loz ◊ spades ♠ clubs ♣ hearts ♥ diams ♦";
for (let i = 0, words = HTML4_SYMBOLS.split(" "); i + 1 < words.length; i += 2) NAMED_ENTITIES[words[i] as string] ??= words[i + 1] as string;

/**
 * The names a browser decodes in text without their ';' (HTML 5's legacy ones: the Latin-1 set,
 * amp, lt, gt, quot and a few capitalized): `Bonjour&nbspmonde`, `&copy2024` and `a &amp b` show
 * as `Bonjour monde`, `©2024` and `a & b`, and a rule must read them so. The longest one is taken.
 */
const LEGACY_ENTITIES = new Set([...LATIN1_ENTITY_NAMES, "amp", "lt", "gt", "quot", "AMP", "LT", "GT", "QUOT", "COPY", "REG"]);
const LEGACY_ENTITY_CHARS = 6;

/**
 * Own entries only: a plain lookup would find Object.prototype's members, and `&constructor;`
 * in a message would throw here and cost the message its body and attachment facts (rules on
 * them evaded).
 */
function namedEntity(name: string): string | null {
  return Object.hasOwn(NAMED_ENTITIES, name) ? (NAMED_ENTITIES[name] as string) : null;
}

/** Longest entity worth looking at: `&#x10FFFF;` and the named ones above fit. */
const MAX_ENTITY_CHARS = 12;

function decodeEntity(html: string, at: number): { text: string; end: number } | null {
  return numericReference(html, at) ?? terminatedEntity(html, at) ?? legacyEntity(html, at);
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

/** A legacy named entity (LEGACY_ENTITIES) at `at` without its ';', as browsers read one in text. */
function legacyEntity(html: string, at: number): { text: string; end: number } | null {
  for (let length = LEGACY_ENTITY_CHARS; length >= 2; length--) {
    const name = html.slice(at + 1, at + 1 + length);
    if (LEGACY_ENTITIES.has(name)) return { text: namedEntity(name) as string, end: at + 1 + length };
  }
  return null;
}

/** A named entity ended by ';' at `at`: `&name;`. */
function terminatedEntity(html: string, at: number): { text: string; end: number } | null {
  const near = html.slice(at + 1, at + 1 + MAX_ENTITY_CHARS).indexOf(";");
  if (near < 0) return null;
  const semi = at + 1 + near;
  const name = html.slice(at + 1, semi);
  // Case-sensitive, as in a browser: `&Auml;` is not `&auml;`, and `&NBSP;` or `&THETA;` is no
  // entity (shown as written); read in lower case, a rule matched words the reader never saw.
  const named = namedEntity(name);
  return named === null ? null : { text: named, end: semi + 1 };
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
    if (BLOCK_TAGS.has(name) || RAW_TEXT_TAGS.has(name)) sink.lineBreak();
    else if (CELL_TAGS.has(name)) sink.space();
    if (!closing && RAW_TEXT_TAGS.has(name)) {
      // As written, to its end tag (`plaintext` has none: the rest of the document).
      const close = name === "plaintext" ? { start: html.length, end: html.length } : closingTag(html, gt + 1, name);
      sink.text(html.slice(gt + 1, close.start));
      sink.lineBreak();
      pos = textFrom = close.end;
      continue;
    }
    pos = textFrom = !closing && SKIPPED_CONTENT_TAGS.has(name) ? skipElementContent(html, gt + 1, name) : gt + 1;
  }
  if (!sink.full) flushText(html.length);
  return sink.result();
}
