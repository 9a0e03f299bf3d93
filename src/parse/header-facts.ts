/**
 * The facts the rules read from a message's top-level header fields: subject, the From
 * mailboxes (every From field: a forged second one counts too), To and Cc addresses and every
 * header by name, decoded (charset, encoded words) and bounded by the limits in limits.ts.
 * Linear in the fields; never throws.
 */
import type { MessageFacts } from "../types.ts";
import { parseAddressList, type Mailbox } from "./address-list.ts";
import { decodeEncodedWords } from "./encoded-words.ts";
import type { RawHeaderField } from "./header-block.ts";
import { fieldText, type HeaderCharset } from "./header-text.ts";
import { MAX_ADDRESSES_PER_LIST, MAX_FROM_MAILBOXES } from "./limits.ts";

/** Header-derived facts of one message. */
export type HeaderFacts = Pick<MessageFacts, "subject" | "from" | "fromName" | "fromAll" | "fromNames" | "to" | "cc" | "headers">;

function addressFacts(values: string[], header: string, note: (text: string) => void): string[] {
  const addresses: string[] = [];
  for (const value of values) {
    const list = parseAddressList(value, MAX_ADDRESSES_PER_LIST - addresses.length);
    // A bare local part too (`Cc: alice@x.example, eryq`), as Python lists it (Mailbox.localPart).
    for (const mailbox of list.mailboxes) {
      const address = mailbox.address || mailbox.localPart;
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
    appendValue(headers, field.name, decodeEncodedWords(text));
  }
  const senders = fromMailboxes(raw.get("from") ?? []);
  const from = senders[0];
  return {
    subject: headers.get("subject")?.[0] ?? "",
    from: from?.address.toLowerCase() ?? "",
    fromName: from?.name ?? "",
    // With the other reading of a joined bare address (Mailbox.unjoined): a From rule is a spoofing
    // check, and must not miss the address postal-mime shows.
    // And a bare local part (`From: eryq`), as Python reads it (Mailbox.localPart).
    fromAll: senders.flatMap((m) => [m.address, m.unjoined ?? "", m.localPart ?? ""].filter((a) => a !== "").map((a) => a.toLowerCase())),
    fromNames: senders.flatMap((m) => (m.name ? [m.name] : [])),
    to: addressFacts(raw.get("to") ?? [], "To", note),
    cc: addressFacts(raw.get("cc") ?? [], "Cc", note),
    headers,
  };
}

export function emptyHeaderFacts(): HeaderFacts {
  return { subject: "", from: "", fromName: "", fromAll: [], fromNames: [], to: [], cc: [], headers: new Map() };
}
