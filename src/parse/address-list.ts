/**
 * RFC 5322 address-list parsing for From/To/Cc, in one linear pass. Replaces postal-mime's
 * addressParser, whose cost per byte is high enough that a 1 MB To: of ':' takes seconds.
 * Lenient like mail clients: groups are flattened, comments become the name when there is
 * no phrase, an address without angle brackets is the first word containing '@', and an
 * angle-addr ends its mailbox when another address follows it without a comma. A quoted
 * local part (`"ceo"@x`, bare or in brackets) is part of the address, in the envelope's
 * canonical form (local-part.ts): read as a name, `"ceo"@company.com` became `@company.com`
 * and slipped past a rule for ceo@company.com. Stops after `maxMailboxes` mailboxes
 * (reported as truncated). Never throws.
 */
import { decodeEncodedWords } from "./encoded-words.ts";
import { isDotAtom, quoteLocalPart, unquoteAddress } from "./local-part.ts";

export interface Mailbox {
  /** Display name, RFC 2047 decoded; "" when none. */
  name: string;
  /** Address as written (case kept); "" when the entry has no address. */
  address: string;
  /**
   * A bare address's first word that is an address on its own, when joinBareAddress read another
   * (`ceo@company.com .evil.example` is ceo@company.com.evil.example to Python, ceo@company.com to
   * postal-mime; `x @ ceo@company.com` is x@ here, ceo@company.com there): the other reading,
   * so a rule for ceo@company.com still sees what such clients show.
   */
  unjoined?: string;
  /**
   * An entry that is one word with no '@' and no angle brackets (`Cc: alice@x.example, eryq`):
   * that word, which Python's email package reads as the address (a local part with no domain),
   * while postal-mime and Thunderbird show it as a name (`name`). So a `cc equals eryq` rule sees
   * the recipient Python lists; the address fields and the webhook's mailboxes stay as they were.
   */
  localPart?: string;
}

export interface AddressList {
  mailboxes: Mailbox[];
  /** True when more than `maxMailboxes` entries were present. */
  truncated: boolean;
}

interface Word {
  text: string;
  quoted: boolean;
}

/** Collects the parts of one mailbox while the scanner walks the value. */
class MailboxDraft {
  words: Word[] = [];
  comments: string[] = [];
  angle: string | null = null;
  /** How many of `words` came before the angle-addr (the rest follow it). */
  wordsBeforeAngle = 0;

  /**
   * The words past the angle-addr, taken off this draft into a new one: they begin the next
   * mailbox (see parseAddressList).
   */
  splitAfterAngle(): MailboxDraft {
    const next = new MailboxDraft();
    next.words = this.words.slice(this.wordsBeforeAngle);
    this.words = this.words.slice(0, this.wordsBeforeAngle);
    return next;
  }

  isEmpty(): boolean {
    return this.words.length === 0 && this.comments.length === 0 && this.angle === null;
  }

  toMailbox(): Mailbox | null {
    let address = "";
    let unjoined: string | undefined;
    let nameWords = this.words;
    if (this.angle !== null) {
      address = unquoteAddress(stripRoute(withoutCommentsAndSpace(this.angle)));
    } else {
      const words = joinBareAddress(this.words);
      const index = words.findIndex((word) => !word.quoted && word.text.includes("@"));
      nameWords = words;
      if (index >= 0) {
        address = words[index]?.text ?? "";
        nameWords = words.filter((_, i) => i !== index);
      }
      const whole = this.words.find((word) => !word.quoted && BARE_ADDRESS.test(word.text))?.text;
      if (whole !== undefined && whole !== address) unjoined = whole;
    }
    const phrase = nameWords.map((word) => word.text).join(" ");
    const name = decodeEncodedWords(phrase || this.comments.join(" ")).trim();
    if (!address && !name) return null;
    const mailbox: Mailbox = unjoined === undefined ? { name, address } : { name, address, unjoined };
    const localPart = address === "" && this.angle === null ? soleLocalPart(this.words) : null;
    if (localPart !== null) mailbox.localPart = localPart;
    return mailbox;
  }
}

/**
 * An angle-addr's content without its comments and folding whitespace, quoted strings kept:
 * RFC 5322 allows CFWS around each part of an addr-spec, so `<ceo@company.com (Chief)>`,
 * `<ceo(x)@company.com>` and `<jdoe@test . example>` are ceo@company.com and jdoe@test.example,
 * as mail clients show them. Kept as written, a rule for ceo@company.com missed them.
 */
function withoutCommentsAndSpace(inside: string): string {
  let out = "";
  let i = 0;
  while (i < inside.length) {
    const ch = inside[i] as string;
    if (ch === '"') {
      const end = scanQuoted(inside, i).end;
      out += inside.slice(i, end);
      i = end;
    } else if (ch === "(") {
      i = scanComment(inside, i).end;
    } else {
      if (!FOLDING_SPACE.has(ch)) out += ch;
      i++;
    }
  }
  return out;
}

const FOLDING_SPACE = new Set([" ", "\t", "\r", "\n"]);

/**
 * Whether a comment between `before` and `after` sits inside a bare addr-spec
 * (`ceo(x)@company.com`, `c@(host)company.com`) rather than beside it, where it is the name.
 */
function insideBareAddress(before: string | undefined, after: string | undefined): boolean {
  if (before === undefined || after === undefined || WORD_BREAK.has(before) || WORD_BREAK.has(after)) return false;
  return before === "@" || after === "@" || before === "." || after === ".";
}

/**
 * The words of a mailbox without angle brackets, those of a bare addr-spec written with folding
 * space around its '@' or its domain's dots joined (`ceo @ company.com`, `"ceo" @company.com`,
 * `ceo@company .com`): RFC 5322 allows CFWS there, and Python's email package reads
 * ceo@company.com. Left apart, the address was `@` or `@company.com`, and a rule for
 * ceo@company.com missed it although a comment in the same place (`ceo(x)@company.com`) was
 * already read through. Never more than one '@' in a joined word. Linear.
 */
function joinBareAddress(words: readonly Word[]): Word[] {
  const out: Word[] = [];
  let lastHasAt = false;
  for (const word of words) {
    const last = out[out.length - 1];
    const at = word.quoted ? -1 : word.text.indexOf("@");
    const oneAtFirst = at === 0 && word.text.indexOf("@", 1) < 0;
    let joined: string | null = null;
    if (last?.quoted && oneAtFirst) joined = unquoteAddress(quoteLocalPart(last.text) + word.text);
    else if (last && !last.quoted && !word.quoted) {
      const aroundAt = (last.text.endsWith("@") && at < 0) || (oneAtFirst && !lastHasAt);
      const aroundDot = lastHasAt && at < 0 && (last.text.endsWith(".") || word.text.startsWith("."));
      if (aroundAt || aroundDot) joined = last.text + word.text;
    }
    if (joined !== null) {
      out[out.length - 1] = { text: joined, quoted: false };
      lastHasAt = true;
    } else {
      out.push(word);
      lastHasAt = at >= 0;
    }
  }
  return out;
}

/** An encoded word or a piece of one (a `:` in its text splits it as a group name would). */
const ENCODED_WORD_PART = /=\?|\?=/;

/**
 * The bare local part of `mailboxes[i]` as a rule should see it (Mailbox.localPart), or "".
 * Not when the next entry is a name and an address: `To: Smith, John <john@x.example>` is an
 * unquoted "Last, First" display name (Outlook-style headers written by a tool that forgot the
 * quotes), and "smith" is nobody's address; listed, it made a rule like "a To address outside
 * our domain" fire on ordinary mail.
 */
export function bareLocalPart(mailboxes: readonly Mailbox[], i: number): string {
  const next = mailboxes[i + 1];
  if (next !== undefined && next.name !== "" && next.address !== "") return "";
  return mailboxes[i]?.localPart ?? "";
}

/** RFC 5321's longest local part: a longer word is a name (a 64 KB run of letters is no recipient). */
const MAX_LOCAL_PART_CHARS = 64;

/** The one word of an entry when it is a bare local part (see Mailbox.localPart), else null; an encoded word (or part of one) is a name. */
function soleLocalPart(words: readonly Word[]): string | null {
  const word = words.length === 1 ? words[0] : undefined;
  if (word === undefined || word.quoted || word.text.length > MAX_LOCAL_PART_CHARS || !isDotAtom(word.text)) return null;
  return ENCODED_WORD_PART.test(word.text) ? null : word.text;
}

/** `@relay1,@relay2:user@example.com` (obsolete source route) → `user@example.com`. */
function stripRoute(address: string): string {
  if (!address.startsWith("@")) return address;
  const colon = address.lastIndexOf(":");
  return colon < 0 ? address : address.slice(colon + 1);
}

/** Index just past the quoted string that opens at `start` (or the end of the value). */
function scanQuoted(value: string, start: number): { end: number; text: string } {
  const chars: string[] = [];
  let i = start + 1;
  for (; i < value.length; i++) {
    const ch = value[i] as string;
    if (ch === "\\" && i + 1 < value.length) {
      chars.push(value[++i] as string);
    } else if (ch === '"') {
      return { end: i + 1, text: chars.join("") };
    } else {
      chars.push(ch);
    }
  }
  return { end: i, text: chars.join("") };
}

/** Index just past the (possibly nested) comment that opens at `start`. */
function scanComment(value: string, start: number): { end: number; text: string } {
  let depth = 0;
  let i = start;
  for (; i < value.length; i++) {
    const ch = value[i];
    if (ch === "\\") i++;
    else if (ch === "(") depth++;
    else if (ch === ")" && --depth === 0) return { end: i + 1, text: value.slice(start + 1, i) };
  }
  return { end: i, text: value.slice(start + 1) };
}

/** A word that is an address on its own (something on both sides of one '@'). */
const BARE_ADDRESS = /[^@]@[^@]/;

const WORD_BREAK = new Set(['"', "(", "<", ",", ";", ":", " ", "\t", "\r", "\n"]);

/** Parses an address-list header value. */
/** Every mailbox of the field values (groups flattened), at most `max` in all: name and address only. */
export function mailboxesOf(values: readonly string[], max: number): { name: string; address: string }[] {
  const out: { name: string; address: string }[] = [];
  for (const value of values) {
    if (out.length >= max) break;
    for (const m of parseAddressList(value, max - out.length).mailboxes) out.push({ name: m.name, address: m.address });
  }
  return out;
}

export function parseAddressList(value: string, maxMailboxes: number): AddressList {
  const mailboxes: Mailbox[] = [];
  let draft = new MailboxDraft();
  const flush = (): boolean => {
    const mailbox = draft.isEmpty() ? null : draft.toMailbox();
    draft = new MailboxDraft();
    if (mailbox) mailboxes.push(mailbox);
    return mailboxes.length < maxMailboxes;
  };
  /**
   * A second address after an angle-addr with no comma between (`Bob <bob@x> Bobby <bobby@x>`,
   * `Bob <bob@x> bobby@x`): the angle-addr ended its mailbox and the words after it begin the
   * next, as Python's getaddresses reads it. Taken as one mailbox (postal-mime's reading,
   * Thunderbird's is one garbled address), bobby@x was in no `from` fact and a rule for it
   * missed the second sender a client may show. False: the cap was reached.
   */
  const nextMailbox = (): boolean => {
    const next = draft.splitAfterAngle();
    if (!flush()) return false;
    draft = next;
    return true;
  };
  let i = 0;
  /** A comment inside a bare addr-spec was just skipped: the next word continues the last one. */
  let glueNextWord = false;
  while (i < value.length) {
    const ch = value[i] as string;
    if (ch === '"') {
      const quoted = scanQuoted(value, i);
      const next = value[quoted.end];
      if (next === "@" || next === ".") {
        // A quoted local part (`"ceo"@x`, `"a b".c@x`): the address word runs on from here.
        let end = quoted.end;
        while (end < value.length && !WORD_BREAK.has(value[end] as string)) end++;
        draft.words.push({ text: unquoteAddress(quoteLocalPart(quoted.text) + value.slice(quoted.end, end)), quoted: false });
        i = end;
        continue;
      }
      draft.words.push({ text: quoted.text, quoted: true });
      i = quoted.end;
    } else if (ch === "(") {
      const comment = scanComment(value, i);
      if (insideBareAddress(value[i - 1], value[comment.end])) glueNextWord = draft.words.length > 0;
      else draft.comments.push(comment.text);
      i = comment.end;
    } else if (ch === "<") {
      const close = value.indexOf(">", i + 1);
      const inside = value.slice(i + 1, close < 0 ? value.length : close);
      if (draft.angle !== null && !nextMailbox()) return { mailboxes, truncated: true };
      draft.angle = inside;
      draft.wordsBeforeAngle = draft.words.length;
      i = close < 0 ? value.length : close + 1;
    } else if (ch === "," || ch === ";") {
      if (!flush()) return { mailboxes, truncated: i + 1 < value.length && value.slice(i + 1).trim() !== "" };
      i++;
    } else if (ch === ":" && draft.angle === null) {
      draft = new MailboxDraft(); // group name: dropped, members are listed flat
      i++;
    } else if (WORD_BREAK.has(ch)) {
      i++;
    } else {
      const start = i;
      while (i < value.length && !WORD_BREAK.has(value[i] as string)) i++;
      const text = value.slice(start, i);
      const last = draft.words[draft.words.length - 1];
      if (glueNextWord && last && !last.quoted) last.text += text;
      else {
        if (draft.angle !== null && BARE_ADDRESS.test(text) && !nextMailbox()) return { mailboxes, truncated: true };
        draft.words.push({ text, quoted: false });
      }
    }
    glueNextWord &&= ch === "(";
  }
  if (mailboxes.length < maxMailboxes) flush();
  else if (!draft.isEmpty()) return { mailboxes, truncated: true };
  return { mailboxes, truncated: false };
}
