/**
 * The JSON body a `webhook` rule posts (SPEC §3 `url`): envelope, headers, text, html,
 * attachment metadata (no contents) and the raw message in base64.
 *
 * Trusts nothing in the message: it is parsed with postal-mime under explicit limits; a
 * message that cannot be parsed (or hits a limit) is still posted, with the decoded fields
 * empty, `parseError` set, and the raw bytes intact — the receiver can always re-parse.
 */
import PostalMime, { type Address, type Email } from "postal-mime";

/** Header bytes postal-mime may decode (all parts). Stops a megabyte To: of encoded words costing seconds of CPU. */
export const WEBHOOK_PARSE_MAX_HEADER_BYTES = 128 * 1024;
/** MIME nesting depth parsed. Stops deeply nested multiparts. */
export const WEBHOOK_PARSE_MAX_DEPTH = 20;
/** message/rfc822 levels parsed inline; deeper ones are listed as attachments. */
export const WEBHOOK_PARSE_MAX_RFC822_DEPTH = 3;
/** Attachments listed. Stops a 10,000-part message from producing a huge metadata array. */
export const WEBHOOK_MAX_ATTACHMENTS = 1000;

export interface WebhookEnvelope {
  mailFrom: string;
  rcptTo: string[];
  clientIp: string;
  helo: string;
  tls: boolean;
}

export interface WebhookMessage {
  /** Gateway message id (the one in `250 Queued as`). */
  id: string;
  receivedAt: number;
  rule: string | null;
  category: string;
  envelope: WebhookEnvelope;
  raw: Uint8Array;
}

export interface WebhookAttachmentMeta {
  filename: string | null;
  contentType: string;
  size: number;
  disposition: string | null;
  contentId: string | null;
}

interface MailboxJson {
  name: string;
  address: string;
}

export interface WebhookPayload {
  id: string;
  /** Unix seconds the body was built; covered by the signature (the header alone is not). */
  timestamp: number;
  receivedAt: string;
  rule: string | null;
  category: string;
  envelope: WebhookEnvelope;
  subject: string | null;
  messageId: string | null;
  date: string | null;
  from: MailboxJson | null;
  to: MailboxJson[];
  cc: MailboxJson[];
  replyTo: MailboxJson[];
  /** Every header in message order, values unfolded but not decoded. */
  headers: { name: string; value: string }[];
  text: string | null;
  html: string | null;
  attachments: WebhookAttachmentMeta[];
  /** The stored message bytes (Received header included), base64. */
  raw: string;
  size: number;
  parseError?: string;
}

export async function buildWebhookPayload(msg: WebhookMessage, nowMs: number): Promise<WebhookPayload> {
  const base: WebhookPayload = {
    id: msg.id,
    timestamp: Math.floor(nowMs / 1000),
    receivedAt: new Date(msg.receivedAt).toISOString(),
    rule: msg.rule,
    category: msg.category,
    envelope: msg.envelope,
    subject: null,
    messageId: null,
    date: null,
    from: null,
    to: [],
    cc: [],
    replyTo: [],
    headers: [],
    text: null,
    html: null,
    attachments: [],
    raw: Buffer.from(msg.raw.buffer, msg.raw.byteOffset, msg.raw.byteLength).toString("base64"),
    size: msg.raw.byteLength,
  };
  let email: Email;
  try {
    email = await PostalMime.parse(msg.raw, {
      maxHeadersSize: WEBHOOK_PARSE_MAX_HEADER_BYTES,
      maxNestingDepth: WEBHOOK_PARSE_MAX_DEPTH,
      maxRfc822NestingDepth: WEBHOOK_PARSE_MAX_RFC822_DEPTH,
    });
  } catch (err) {
    return { ...base, parseError: err instanceof Error ? err.message : String(err) };
  }
  return {
    ...base,
    subject: email.subject ?? null,
    messageId: email.messageId ?? null,
    date: email.date ?? null,
    from: email.from ? (mailboxes([email.from])[0] ?? null) : null,
    to: mailboxes(email.to),
    cc: mailboxes(email.cc),
    replyTo: mailboxes(email.replyTo),
    headers: email.headers.map((h) => ({ name: h.originalKey, value: h.value })),
    text: email.text ?? null,
    html: email.html ?? null,
    attachments: email.attachments.slice(0, WEBHOOK_MAX_ATTACHMENTS).map((a) => ({
      filename: a.filename,
      contentType: a.mimeType,
      size: typeof a.content === "string" ? a.content.length : a.content.byteLength,
      disposition: a.disposition,
      contentId: a.contentId ?? null,
    })),
  };
}

/** Flattens groups into their members. */
function mailboxes(list: Address[] | undefined): MailboxJson[] {
  const out: MailboxJson[] = [];
  for (const a of list ?? []) {
    if (a.group) for (const m of a.group) out.push({ name: m.name, address: m.address });
    else out.push({ name: a.name, address: a.address });
  }
  return out;
}
