/**
 * `mailgw serve` forwarding a message with lines over 998 octets (RFC 5321 4.5.3.1.6, RFC 5322
 * 2.1.1): one-line HTML, a long unfolded header, a long line with no blank. A strict relay
 * refuses such lines, so the copy for the relay has them broken, as Postfix 3.7's SMTP client
 * does (smtp_line_length_limit = 998): before a blank where the line has one (a fold: the header
 * unfolds to what the sender wrote), else CRLF SPACE after 998 octets. Lines of exactly 998
 * octets are kept, SIZE= is the size sent, and the archived copy keeps the bytes as received.
 * For a relay without 8BITMIME, a long 8-bit line is converted first (quoted-printable keeps its
 * text whole), then the long header is broken.
 */
import { afterEach, expect, test } from "bun:test";
import PostalMime from "postal-mime";
import { waitFor, type ReceivedMessage } from "../delivery/helpers.ts";
import { forwardGateway, sendOne, type Cleanups } from "../helpers/forward-gateway.ts";
import { archivedCopy, queueList, until } from "../smtp/serve-process.ts";

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: fwd, priority: 10, category: ops, action: forward, archive: true, forward_to: [inbox@forward.example], conditions: [{ field: size, operator: gt, value: 0 }] }
`;
const words = (n: number): string => Array.from({ length: n }, (_, i) => `w${String(i).padStart(4, "0")}`).join(" ");
const LONG_HEADER = `X-Long: ${words(300)}`; // 1,807 octets, blanks every 6
const HTML = `<html><body>${Array.from({ length: 400 }, (_, i) => `<p class="c${i}">para ${i}</p>`).join(" ")}</body></html>`;
const NO_BLANK = "a".repeat(2500);
const DOTTED = `.${"d".repeat(1200)}`;
const MESSAGE =
  "From: alice@example.org\r\nTo: bob@company.com\r\nSubject: long lines\r\nMessage-ID: <long-lines@example.org>\r\n" +
  `${LONG_HEADER}\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n` +
  `${HTML}\r\n${NO_BLANK}\r\n${"b".repeat(998)}\r\n${"c".repeat(999)}\r\n${DOTTED}\r\nend\r\n`;

const cleanups: Cleanups = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

/** The message in over SMTP, forwarded to a capturing relay; what the relay got and the archived copy. */
async function forward(message: string, relayOpts: { hide8BitMime?: boolean; sizeLimit?: number } = {}): Promise<{ copy: ReceivedMessage; archived: Buffer }> {
  const { relay, s } = await forwardGateway(cleanups, { mode: "source", rules: RULES, relay: relayOpts, ports: [49000, 49999] });
  const reply = await sendOne(s.smtpPort, message, { mailParams: " BODY=8BITMIME" });
  await waitFor(() => relay.received.length === 1, 15_000, "the forward at the relay");
  await until("the delivery recorded", async () => (await queueList(s.dir)).length === 0);
  const archived = await archivedCopy(s.dir, reply.split(" ").pop() ?? "");
  expect(await s.stop()).toBe(0);
  if (archived === null) throw new Error("no archived copy");
  return { copy: relay.received[0] as ReceivedMessage, archived };
}

const linesOf = (b: Buffer): string[] => b.toString("utf8").split("\r\n");
const unfold = (s: string): string => s.replace(/\r\n(?=[ \t])/g, "");

test("lines over 998 octets reach the relay broken as Postfix breaks them; the archive keeps them", async () => {
  const { copy, archived } = await forward(MESSAGE, { sizeLimit: 10_240_000 });
  const lines = linesOf(copy.data);
  expect(Math.max(...lines.map((l) => Buffer.byteLength(l)))).toBeLessThanOrEqual(998);
  const text = copy.data.toString("utf8");
  // The header is folded before blanks: unfolded, it is what the sender wrote.
  const header = text.slice(0, text.indexOf("\r\n\r\n") + 2);
  expect(unfold(header)).toContain(`\r\n${LONG_HEADER}\r\n`);
  // The HTML line too, only line breaks added before its blanks (whitespace to HTML either way).
  const html = text.slice(header.length + 2, text.indexOf(`\r\n${"a".repeat(998)}\r\n`));
  expect(html).toContain("\r\n");
  expect(html.replaceAll("\r\n", "")).toBe(HTML);
  // No blank: Postfix's cut, CRLF SPACE after 998 octets, 997 after that.
  expect(text).toContain(`\r\n${"a".repeat(998)}\r\n ${"a".repeat(997)}\r\n ${"a".repeat(505)}\r\n`);
  // Exactly 998 octets: kept; 999: the last one on a line of its own.
  expect(text).toContain(`\r\n${"b".repeat(998)}\r\n${"c".repeat(998)}\r\n c\r\n`);
  // A long line starting with '.' arrives with its dot (stuffed on the wire, the break after it).
  expect(text).toContain(`\r\n.${"d".repeat(997)}\r\n ${"d".repeat(203)}\r\nend\r\n`);
  // SIZE= (the relay offers it) announced what was sent.
  expect(copy.size).toBe(String(copy.data.length));
  // The archived copy is the message as received, long lines and all.
  expect(archived.toString("utf8")).toEndWith(`\r\n${MESSAGE}`);
}, 60_000);

test("a relay without 8BITMIME: the long 8-bit line goes as quoted-printable, the long header folded", async () => {
  const body = `${"Grüße aus Köln, ".repeat(120)}fin\r\n`; // one 2,283-octet line
  const message = `From: alice@example.org\r\nTo: bob@company.com\r\nSubject: lang\r\n${LONG_HEADER}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n${body}`;
  const { copy, archived } = await forward(message, { hide8BitMime: true });
  expect(copy.body).toBeUndefined();
  expect(Math.max(...linesOf(copy.data).map((l) => l.length))).toBeLessThanOrEqual(998);
  expect(unfold(copy.data.toString("latin1"))).toContain(`\r\n${LONG_HEADER}\r\n`);
  expect((await PostalMime.parse(copy.data)).text).toBe((await PostalMime.parse(Buffer.from(message, "utf8"))).text);
  expect(archived.toString("utf8")).toEndWith(`\r\n${message}`);
}, 60_000);
