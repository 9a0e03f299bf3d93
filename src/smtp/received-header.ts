/**
 * The `Received:` trace header mailgw prepends (RFC 5321 §4.4) and the loop check on the
 * ones already present (more than MAX_RECEIVED_HEADERS → 554 5.4.6).
 *
 * Trusts nothing from the client: the HELO name is reduced to a safe character set before
 * it goes into the header (no CR/LF/parentheses injection); the client address is the
 * socket's (or PROXY header's), never client-supplied text.
 */

export interface ReceivedInfo {
  helo: string;
  clientIp: string;
  /** Our name (SMTP_HOSTNAME). */
  hostname: string;
  /** smtp-server's transmission type: SMTP, ESMTP, ESMTPS. */
  protocol: string;
  /** Negotiated TLS version and cipher, when under TLS. */
  tls: { version: string; cipher: string } | null;
  /** Our id for the message: the queue id of `250 Queued as` (the session/transaction id for a sink without one). */
  id: string;
  recipients: readonly string[];
  date: Date;
}

const UNSAFE_HELO = /[^A-Za-z0-9.\-_:[\]]/g;
const MAX_HELO_IN_HEADER = 255;

export function buildReceivedHeader(info: ReceivedInfo): string {
  const helo = info.helo.replace(UNSAFE_HELO, "?").slice(0, MAX_HELO_IN_HEADER) || "unknown";
  const ip = info.clientIp.includes(":") ? `IPv6:${info.clientIp}` : info.clientIp;
  const lines = [`Received: from ${helo} ([${ip}])`, `\tby ${info.hostname} (mailgw) with ${info.protocol}`];
  if (info.tls) lines.push(`\t(version=${info.tls.version} cipher=${info.tls.cipher})`);
  const only = info.recipients.length === 1 ? info.recipients[0] : undefined;
  lines.push(`\tid ${info.id}${only ? ` for <${only}>` : ""};`, `\t${rfc5322Date(info.date)}`);
  return `${lines.join("\r\n")}\r\n`;
}

/**
 * The empty line written after our Received header when the client's message starts with a
 * space or a tab. Such a first line continues the header before it, which is ours: the
 * client's text would have been folded into mailgw's trace header (a forged `by`, `for` or
 * date inside the one Received line that rules and downstream filters trust). Postfix's smtpd
 * does the same (its "ugly kluge"); the client's lines become the body, as they have no
 * header field to belong to.
 */
export const FOLD_BREAK = Buffer.from("\r\n");

/** Whether a message starting with this byte needs FOLD_BREAK after our Received header. */
export function continuesReceived(firstByte: number | undefined): boolean {
  return firstByte === 0x20 || firstByte === 0x09;
}

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** `Tue, 1 Jul 2025 12:00:00 +0000` (UTC; RFC 5322 §3.3). */
export function rfc5322Date(d: Date): string {
  const two = (n: number) => String(n).padStart(2, "0");
  const time = `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())}`;
  return `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${time} +0000`;
}

/** serve's reply after DATA when the client's header has more than MAX_RECEIVED_HEADERS of them. */
export const LOOP_REPLY = { code: 554, text: "5.4.6 Too many hops (Received headers), mail loop suspected" } as const;

/** The field name; the colon may follow after spaces or tabs (RFC 5322 §4.5, obsolete but sent). */
const RECEIVED = Buffer.from("received");

/**
 * Counts `Received:` fields in the header section (up to the first empty line; CRLF or bare
 * LF line ends; any case), stopping as soon as the count exceeds `stopAfter`, so a message
 * with a million of them costs no more than one with `stopAfter + 1`.
 */
export function countReceivedHeaders(message: Uint8Array, stopAfter: number): number {
  let count = 0;
  let lineStart = 0;
  while (lineStart < message.length) {
    let next = message.indexOf(0x0a, lineStart);
    if (next === -1) next = message.length;
    const lineEnd = next > lineStart && message[next - 1] === 0x0d ? next - 1 : next;
    if (lineEnd === lineStart) break;
    if (startsWithReceived(message, lineStart, lineEnd) && ++count > stopAfter) return count;
    lineStart = next + 1;
  }
  return count;
}

function startsWithReceived(message: Uint8Array, start: number, end: number): boolean {
  if (end - start <= RECEIVED.length) return false;
  for (let i = 0; i < RECEIVED.length; i++) {
    const byte = message[start + i] ?? 0;
    const lower = byte >= 0x41 && byte <= 0x5a ? byte + 0x20 : byte;
    if (lower !== RECEIVED[i]) return false;
  }
  let at = start + RECEIVED.length;
  while (at < end && (message[at] === 0x20 || message[at] === 0x09)) at++;
  return at < end && message[at] === 0x3a;
}
