/**
 * The message's side of a condition: which fact a field reads (subject, recipients, a header…)
 * and the forms the comparisons take — Unicode NFC for every text, lower case for the text
 * operators, an address's IDN domain in ASCII — computed once per message and field in the
 * scope's slots (matchers.ts compiles the conditions that use them). Pure.
 */
import { asciiDomainForm } from "./address.ts";
import type { AuthResult, EvalScope, FieldName, MessageFacts } from "./types.ts";

const NO_VALUES: readonly string[] = Object.freeze([]);

type TextReader = (facts: MessageFacts) => string;
type ListReader = (facts: MessageFacts) => readonly string[];

const TEXT_READERS: Readonly<Record<string, TextReader>> = {
  subject: (f) => f.subject,
  mail_from: (f) => f.mailFrom,
  body: (f) => f.body,
  helo: (f) => f.helo,
  client_ip: (f) => f.clientIp,
};

const LIST_READERS: Readonly<Record<string, ListReader>> = {
  from: (f) => f.fromAll,
  from_name: (f) => f.fromNames,
  to: (f) => f.to,
  cc: (f) => f.cc,
  rcpt: (f) => f.rcpt,
  attachment: (f) => f.attachments,
  attachment_type: (f) => f.attachmentTypes,
};

export const AUTH_READERS: Readonly<Record<string, (facts: MessageFacts) => AuthResult>> = {
  spf: (f) => f.spf,
  dkim: (f) => f.dkim,
  dmarc: (f) => f.dmarc,
};

export function listReader(field: FieldName): ListReader {
  if (field.startsWith("header:")) {
    const name = field.slice("header:".length);
    return (f) => f.headers.get(name) ?? NO_VALUES;
  }
  const reader = LIST_READERS[field];
  if (reader === undefined) throw new Error(`no list reader for ${field}`);
  return reader;
}

export function textReader(field: FieldName): TextReader {
  const reader = TEXT_READERS[field];
  if (reader === undefined) throw new Error(`no text reader for ${field}`);
  return reader;
}

/**
 * The readings of a text field a comparison tries (matching when one matches): the text, and for
 * a subject with a NUL in it the text before the NUL too, as Thunderbird shows it and a Postfix
 * relay delivers it (`Urgent wire<NUL>x` is `Urgent wire` there). The header lists have that
 * reading among their values already (parse/header-facts.ts); the subject is one value.
 */
export function textReadings(field: FieldName): (facts: MessageFacts) => readonly string[] {
  const read = textReader(field);
  if (field !== "subject") return (f) => [read(f)];
  return (f) => {
    const text = read(f);
    const nul = text.indexOf("\0");
    return nul < 0 ? [text] : [text, text.slice(0, nul)];
  };
}

/**
 * Text in Unicode normalization form C. The same text can come precomposed (`견`, `ü`) or
 * decomposed (the jamo `ᄀ ᅧ ᆫ`, `u` + U+0308): macOS writes file names decomposed, so an
 * attachment `견적서.pdf` or `データ.xlsx` from a Mac, or a subject or address typed there, arrives
 * in that form and looks the same in every mail client. Both sides of a comparison (the rule's
 * value and the message's) are put in NFC, or `contains 견적` missed text that reads 견적.
 */
export function nfc(text: string): string {
  return text.replace(LONG_MARK_RUN, `$&${CGJ}`).normalize("NFC");
}

/**
 * NFC sorts each run of combining marks by combining class, and the runtime's (ICU's) sort is
 * quadratic in the run: a body of one letter and 60,000 marks (120 KB, 230-class marks before
 * 220-class ones) took 9 s, on the thread that serves every SMTP session and the HTTP page, and
 * 1,000,000 marks (the body text cap) would take most of an hour. UAX #15's Stream-Safe Text
 * Format bounds the runs: a COMBINING GRAPHEME JOINER (invisible, class 0, so marks are not
 * reordered across it) after every 30 marks. Only text no script writes is changed.
 */
const LONG_MARK_RUN = /\p{M}{30}(?=\p{M})/gu;
const CGJ = "\u034F";

/**
 * Fields holding mail addresses. An IDN domain is in ASCII form in the envelope (as serve keeps it)
 * and in whichever form the sender wrote in the headers: the text operators compare such an
 * address with its domain in ASCII form (asciiDomainForm), so a rule may name it either way.
 */
export const ADDRESS_FIELDS: ReadonlySet<FieldName> = new Set<FieldName>(["from", "to", "cc", "rcpt", "mail_from"]);

/**
 * Text as the case-insensitive operators compare it. toLowerCase() writes a capital sigma as ς at
 * the end of a word and σ elsewhere, so the same letters came out differently with what follows
 * them: `contains ΠΡΟΣ` ("προς") missed the subject "ΠΡΟΣΦΟΡΑ" ("προσφορα"), which even a
 * case-sensitive test finds, and `ends_with Σ` missed "ΟΔΟΣ". Both are lower-case Σ: one form.
 */
export function lowerCase(text: string): string {
  const lower = text.toLowerCase();
  return lower.includes("ς") ? lower.replaceAll("ς", "σ") : lower;
}

/**
 * Lower-cased, and on an address field with the domain in ASCII form: what the text operators
 * compare. The domain is converted before lowerCase: IDNA keeps ς and σ apart (`οδος.gr` and
 * `οδοσ.gr` are two domains), and the envelope holds the ASCII form serve made of the domain as sent.
 */
export function comparable(field: FieldName): (value: string) => string {
  return ADDRESS_FIELDS.has(field) ? (v) => lowerCase(asciiDomainForm(nfc(v).toLowerCase())) : (v) => lowerCase(nfc(v));
}

/** `compute` of the message's facts, computed once per message in its slot. */
function perMessage<T extends string | readonly string[]>(slot: number, compute: (facts: MessageFacts) => T): (s: EvalScope) => T {
  return (s) => {
    let v = s.lowered[slot];
    if (v === undefined) {
      v = compute(s.facts);
      s.lowered[slot] = v;
    }
    return v as T;
  };
}

/** A text field's readings (textReadings) as the text operators compare them. */
export function loweredText(field: FieldName, slot: number): (s: EvalScope) => readonly string[] {
  const read = textReadings(field);
  const normalize = comparable(field);
  return perMessage(slot, (f) => read(f).map(normalize));
}

/** loweredText for a multi-valued field. */
export function loweredList(field: FieldName, slot: number): (s: EvalScope) => readonly string[] {
  const read = listReader(field);
  const normalize = comparable(field);
  return perMessage(slot, (f) => read(f).map(normalize));
}

/**
 * The forms a regex is tried on: the text as sent and, when it differs, in NFC. NFC alone hid
 * what a pattern for combining marks (`[\u0300-\u036f]`, a check for stacked-mark text) looks
 * for, as sent alone a decomposed `견적` from a Mac from a pattern typed precomposed. Most text is
 * NFC already: one form.
 */
function regexForms(text: string): readonly string[] {
  const composed = nfc(text);
  return composed === text ? [text] : [text, composed];
}

/** A text field as a regex sees it (regexForms), once per message. */
export function regexText(field: FieldName, slot: number): (s: EvalScope) => readonly string[] {
  const read = textReadings(field);
  return perMessage(slot, (f) => read(f).flatMap(regexForms));
}

/** regexText for a multi-valued field: every form of every value. */
export function regexList(field: FieldName, slot: number): (s: EvalScope) => readonly string[] {
  const read = listReader(field);
  return perMessage(slot, (f) => read(f).flatMap(regexForms));
}
