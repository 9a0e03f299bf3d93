/**
 * The header fields postal-mime shows for a message forwarded inline (message/rfc822) in the
 * webhook's `text` and `html` (its `From:` / `Subject:` / `To:` block), read as the rules and
 * the payload's top level read a header (header-text.ts, address-list.ts): raw 8-bit bytes in
 * the forwarded message's own charset, raw ISO-2022-JP decoded. postal-mime reads a header line
 * as UTF-8, so a forward from an old Korean or Japanese mailer showed its Subject as U+FFFD, and
 * a raw JIS display name as a group with no address. Only the fields postal-mime misreads are
 * given (part-header-charset.ts notUtf8); the others stay as it read them. Bounded by the header
 * block limits (header-block.ts); linear; never throws.
 */
import type { Email } from "postal-mime";
import { mailboxesOf, parseAddressList } from "./address-list.ts";
import { decodeEncodedWords } from "./encoded-words.ts";
import { splitHeaderBlock, type RawHeaderField } from "./header-block.ts";
import { fieldText, headerCharset } from "./header-text.ts";
import { MAX_ADDRESSES_PER_LIST } from "./limits.ts";
import { notUtf8 } from "./part-header-charset.ts";

/** The fields of a message's header that postal-mime's text of a forward shows (and the reply address). */
export type ShownHeader = Partial<Pick<Email, "subject" | "from" | "to" | "cc" | "bcc" | "replyTo">>;

/** postal-mime's picks: the first Subject and From; every To, Cc, Bcc and Reply-To. */
const LISTS = [["to", "to"], ["cc", "cc"], ["bcc", "bcc"], ["reply-to", "replyTo"]] as const;

/** The shown fields of the message at the start of `message` that have bytes postal-mime misreads, read in its charset. */
export function rawShownHeader(message: Uint8Array): ShownHeader {
  const block = splitHeaderBlock(message);
  const charset = headerCharset(block.fields, message, block.bodyStart);
  const named = (name: string): RawHeaderField[] => block.fields.filter((field) => field.name === name);
  const misread = (fields: RawHeaderField[]): boolean => fields.some((field) => notUtf8(field.value));
  const shown: ShownHeader = {};
  const subject = named("subject")[0];
  if (subject && misread([subject])) shown.subject = decodeEncodedWords(fieldText(subject, charset));
  const from = named("from")[0];
  if (from && misread([from])) {
    const mailbox = parseAddressList(fieldText(from, charset), 1).mailboxes[0];
    if (mailbox) shown.from = { name: mailbox.name, address: mailbox.address };
  }
  for (const [name, key] of LISTS) {
    const fields = named(name);
    if (misread(fields)) shown[key] = mailboxesOf(fields.map((field) => fieldText(field, charset)), MAX_ADDRESSES_PER_LIST);
  }
  return shown;
}
