/**
 * The facts the rules read from a message's top-level header fields: subject, the From
 * mailboxes (every From field: a forged second one counts too), To and Cc addresses and every
 * header by name, decoded (charset, encoded words) and bounded by the limits in limits.ts.
 *
 * A value with a NUL in it reads two ways: Python's email package keeps the NUL and what
 * follows, while software that holds header values as C strings ends the value there:
 * Thunderbird's message list (nsParseMailbox.cpp keeps the subject and author as C strings) and
 * a Postfix relay, which delivers `Subject: Urgent wire` for `Urgent wire<NUL>x`. So each such
 * value also counts as the text before its NUL (beforeNul): in `headers`, and for From, To and
 * Cc, whose addresses that text is parsed for again (`From: ceo@company.com<NUL><x@evil.example>`
 * shows ceo@company.com as the sender where the value is cut). The `subject` fact stays the
 * first Subject as written; the rules compare it both ways (rules/field-values.ts).
 * Linear in the fields; never throws.
 */
import type { MessageFacts } from "../types.ts";
import { bareLocalPart, parseAddressList, type Mailbox } from "./address-list.ts";
import { decodeEncodedWords } from "./encoded-words.ts";
import type { RawHeaderField } from "./header-block.ts";
import { fieldText, type HeaderCharset } from "./header-text.ts";
import { MAX_ADDRESSES_PER_LIST, MAX_FROM_MAILBOXES } from "./limits.ts";

/** Header-derived facts of one message. */
export type HeaderFacts = Pick<MessageFacts, "subject" | "from" | "fromName" | "fromAll" | "fromNames" | "to" | "cc" | "headers">;

/** The text before the first NUL of `text`, or null when it has none. */
export function beforeNul(text: string): string | null {
  const nul = text.indexOf("\0");
  return nul < 0 ? null : text.slice(0, nul);
}

/** `first`, then what `more` has that it lacks (the second reading of a list mostly repeats the first). */
function unionOf(first: string[], more: string[]): string[] {
  if (more.length === 0) return first;
  const seen = new Set(first);
  for (const v of more) {
    if (seen.has(v)) continue;
    seen.add(v);
    first.push(v);
  }
  return first;
}

function addressFacts(values: string[], header: string, note: (text: string) => void): string[] {
  const addresses: string[] = [];
  for (const value of values) {
    const list = parseAddressList(value, MAX_ADDRESSES_PER_LIST - addresses.length);
    // A bare local part too (`Cc: alice@x.example, eryq`), as Python lists it (Mailbox.localPart).
    for (const [i, mailbox] of list.mailboxes.entries()) {
      const address = mailbox.address || bareLocalPart(list.mailboxes, i);
      if (address) addresses.push(address.toLowerCase());
    }
    if (list.truncated || addresses.length >= MAX_ADDRESSES_PER_LIST) {
      if (list.truncated || values.indexOf(value) < values.length - 1) {
        note(`more than ${MAX_ADDRESSES_PER_LIST} ${header} addresses, the rest ignored`);
      }
      break;
    }
  }
  return addresses;
}

/** The mailboxes of every From field (a forged second one counts too), at most MAX_FROM_MAILBOXES. */
function fromMailboxes(values: string[]): Mailbox[] {
  const mailboxes: Mailbox[] = [];
  for (const value of values) {
    if (mailboxes.length >= MAX_FROM_MAILBOXES) break;
    mailboxes.push(...parseAddressList(value, MAX_FROM_MAILBOXES - mailboxes.length).mailboxes);
  }
  return mailboxes;
}

function appendValue(map: Map<string, string[]>, name: string, value: string): void {
  const values = map.get(name);
  if (values) values.push(value);
  else map.set(name, [value]);
}

/** The header facts of `fields` (the rules' subject, from, to, cc and headers), raw 8-bit bytes read as `charset` says; `note` is told what a limit cut off. */
export function headerFacts(fields: RawHeaderField[], charset: HeaderCharset, note: (text: string) => void): HeaderFacts {
  const raw = new Map<string, string[]>();
  const headers = new Map<string, string[]>();
  for (const field of fields) {
    const text = fieldText(field, charset);
    appendValue(raw, field.name, text);
    const decoded = decodeEncodedWords(text);
    appendValue(headers, field.name, decoded);
    // Raw or encoded (`=?utf-8?Q?Urgent_wire=00x?=`): a NUL ends the value for C-string software.
    const cut = beforeNul(decoded);
    if (cut !== null) appendValue(headers, field.name, cut);
  }
  const senders = fromMailboxes(raw.get("from") ?? []);
  const cutSenders = fromMailboxes(cutReadings(raw.get("from")));
  const from = senders[0];
  return {
    subject: headers.get("subject")?.[0] ?? "",
    from: from?.address.toLowerCase() ?? "",
    fromName: from?.name ?? "",
    fromAll: unionOf(fromAddresses(senders), fromAddresses(cutSenders)),
    fromNames: unionOf(fromNames(senders), fromNames(cutSenders)),
    to: unionOf(addressFacts(raw.get("to") ?? [], "To", note), addressFacts(cutReadings(raw.get("to")), "To", note)),
    cc: unionOf(addressFacts(raw.get("cc") ?? [], "Cc", note), addressFacts(cutReadings(raw.get("cc")), "Cc", note)),
    headers,
  };
}

/** The readings before the NUL of the values that have one. */
function cutReadings(values: readonly string[] | undefined): string[] {
  return (values ?? []).map(beforeNul).filter((v): v is string => v !== null);
}

/**
 * Every address of the mailboxes, with the other reading of a joined bare address
 * (Mailbox.unjoined): a From rule is a spoofing check, and must not miss the address
 * postal-mime shows. And a bare local part (`From: eryq`), as Python reads it (Mailbox.localPart).
 */
function fromAddresses(senders: Mailbox[]): string[] {
  return senders.flatMap((m, i) => [m.address, m.unjoined ?? "", bareLocalPart(senders, i)].filter((a) => a !== "").map((a) => a.toLowerCase()));
}

function fromNames(senders: Mailbox[]): string[] {
  return senders.flatMap((m) => (m.name ? [m.name] : []));
}

export function emptyHeaderFacts(): HeaderFacts {
  return { subject: "", from: "", fromName: "", fromAll: [], fromNames: [], to: [], cc: [], headers: new Map() };
}
