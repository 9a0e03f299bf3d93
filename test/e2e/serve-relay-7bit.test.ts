/**
 * The compiled `mailgw serve` forwarding an 8-bit message to a relay that does not offer
 * 8BITMIME (an smtp-server instance with hide8BITMIME): RFC 6152 §3 forbids sending it the 8-bit
 * bytes, so the copy arrives converted (quoted-printable, no BODY= parameter), and a reader
 * decodes the same text as from what the client sent. A relay that offers 8BITMIME gets the
 * bytes as sent, with BODY=8BITMIME.
 */
import { afterAll, afterEach, expect, test } from "bun:test";
import { isAscii } from "node:buffer";
import PostalMime from "postal-mime";
import { waitFor } from "../delivery/helpers.ts";
import { forwardGateway, sendOne, type Cleanups } from "../helpers/forward-gateway.ts";
import { cleanupBinary, queueList, until } from "../smtp/serve-process.ts";

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: fwd, priority: 10, category: ops, action: forward, forward_to: [inbox@forward.example], conditions: [{ field: size, operator: gt, value: 0 }] }
`;
const MESSAGE =
  "From: alice@example.org\r\nTo: bob@company.com\r\nSubject: Gruss\r\nMIME-Version: 1.0\r\n" +
  "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße aus Köln, ½ €.\r\n";

const cleanups: Cleanups = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);
afterAll(() => cleanupBinary(), 60_000);

async function forwardThrough(hide8BitMime: boolean, message = MESSAGE) {
  const { relay, s } = await forwardGateway(cleanups, { mode: "binary", rules: RULES, relay: { hide8BitMime } });
  await sendOne(s.smtpPort, message, { mailParams: " BODY=8BITMIME" });
  await waitFor(() => relay.received.length === 1, 15_000, "the forward at the relay");
  expect(await queueList(s.dir)).toEqual([]);
  expect(await s.stop()).toBe(0);
  return relay.received[0]!;
}

test("a relay without 8BITMIME gets the 8-bit message as quoted-printable, no BODY=, the same text", async () => {
  const copy = await forwardThrough(true);
  expect(copy.body).toBeUndefined();
  expect(isAscii(copy.data)).toBe(true);
  expect(copy.data.toString("latin1")).toContain("Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe aus K=C3=B6ln");
  expect((await PostalMime.parse(copy.data)).text).toBe((await PostalMime.parse(Buffer.from(MESSAGE, "utf8"))).text);
}, 60_000);

test("a relay with 8BITMIME gets the bytes as sent, with BODY=8BITMIME", async () => {
  const copy = await forwardThrough(false);
  expect(copy.body).toBe("8BITMIME");
  expect(copy.data.toString("utf8")).toEndWith(MESSAGE);
}, 60_000);

// A soft break before "--b42" in the middle of a long line put the part's boundary at the start of
// a line: the relay's reader saw the part end there and the rest of the text become a part of its
// own (here an attachment the sender never attached, and rules never saw).
test("a soft break never starts a line with the enclosing boundary: the reader gets the same parts", async () => {
  const message =
    'From: alice@example.org\r\nTo: bob@company.com\r\nSubject: Gruss\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b42"\r\n\r\n' +
    "--b42\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n" +
    `${"x".repeat(75)}--b42\r\nContent-Type: application/octet-stream; name="payload.exe"\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b42--\r\n`;
  const copy = await forwardThrough(true, message);
  expect(isAscii(copy.data)).toBe(true);
  const [before, after] = [await PostalMime.parse(Buffer.from(message, "utf8")), await PostalMime.parse(copy.data)];
  expect(after.attachments).toEqual([]);
  expect(after.text).toBe(before.text);
}, 60_000);

// serve reads a part's Content-Transfer-Encoding as postal-mime does, by its first token: the
// rules saw '"quoted-printable"' decoded. The conversion took the label for no encoding and
// encoded the quoted-printable a second time: the relay's reader saw "=C3=BC" for "ü".
test("a quoted or parameterised Content-Transfer-Encoding is still that encoding: the reader gets the same text", async () => {
  const message =
    "From: alice@example.org\r\nTo: bob@company.com\r\nSubject: Gruss\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n" +
    'Content-Transfer-Encoding: "quoted-printable"\r\n\r\nGr=C3=BC=C3=9Fe und K\u00f6ln =3D 1\r\n';
  const copy = await forwardThrough(true, message);
  expect(isAscii(copy.data)).toBe(true);
  const [before, after] = [await PostalMime.parse(Buffer.from(message, "utf8")), await PostalMime.parse(copy.data)];
  expect(before.text).toBe("Grüße und Köln = 1\n");
  expect(after.text).toBe(before.text);
}, 60_000);

// Quoted-printable makes 8-bit text up to three times as big: a message within the relay's SIZE
// as received can be over it converted. It fails at once, for good, and `queue list` said only
// nodemailer's "Message size larger than allowed 60000" next to a 44 KB message; now it says why.
test("converted past the relay's SIZE: failed at once, for good, saying the conversion made it grow", async () => {
  const { relay, s } = await forwardGateway(cleanups, { mode: "binary", rules: RULES, relay: { hide8BitMime: true, sizeLimit: 60_000 } });
  const text = `${"Grüße aus Köln, ½ €. ".repeat(4)}\r\n`.repeat(400); // 44,000 octets, about 80,000 as quoted-printable
  await sendOne(s.smtpPort, `${MESSAGE.slice(0, MESSAGE.indexOf("\r\n\r\n") + 4)}${text}`, { mailParams: " BODY=8BITMIME" });
  await until("the forward failed", async () => (await queueList(s.dir, "failed")).length === 1);
  const [entry] = await queueList(s.dir, "failed");
  expect(entry?.lastError).toMatch(/^552 5\.3\.4 the message is \d+ bytes as converted to 7-bit for a relay without 8BITMIME \(\d+ as received\), over the relay's SIZE limit 60000: /);
  expect(entry?.attempts).toBe(1);
  expect(relay.mailFroms).toEqual([]);
  expect(await s.stop()).toBe(0);
}, 60_000);
