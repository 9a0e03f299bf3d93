/**
 * Through the real `mailgw serve` (from source) over SMTP and a webhook receiver: a message
 * forwarded inline (message/rfc822) whose header the rules read two ways (a line that starts no
 * field, a line of only spaces: 7b24cee, de7a478) is posted with the header lines postal-mime
 * drops in its `text`, after the forward's header block, as the payload's top level has them
 * (58aacc3). The webhook rule below matches words on such a line; before, in a forward that was
 * not one text part (multipart, or itself a forward), the post it sent did not have them.
 * Ports: picked in 46000-46999 (loopback).
 */
import { expect, test } from "bun:test";
import type { WebhookPayload } from "../../src/act/webhook-payload.ts";
import { freePortsIn } from "../helpers/interop.ts";
import { sendMessage } from "../helpers/webhook-messages.ts";
import { serveWithWebhook } from "../helpers/serve-webhook-suite.ts";

const WORDS = "Please send the wire transfer today";

const suite = serveWithWebhook(
  () => freePortsIn(3, 46000, 46999),
  (url) => `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: wire-review, priority: 10, category: fraud, action: webhook, url: "${url}", conditions: [{ field: body, operator: contains, value: "send the wire transfer today" }] }
`,
);

/** A message from a@partner.example forwarding `inner` inline, after a text part. */
function forwarding(inner: string): Buffer {
  return Buffer.from(
    "From: a@partner.example\r\nTo: sales@company.com\r\nSubject: fwd\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n" +
      `--b\r\nContent-Type: text/plain\r\n\r\nsee below\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n${inner}--b--\r\n`,
  );
}

/** A multipart forward: its text part and a file. */
const PARTS = '--i\r\nContent-Type: text/plain\r\n\r\ninner text\r\n--i\r\nContent-Type: application/pdf; name="invoice.pdf"\r\n\r\n%PDF\r\n--i--\r\n';

/** The post of `inner` forwarded: the webhook rule sent it (so the rules saw WORDS in the body). */
async function postOf(name: string, inner: string): Promise<WebhookPayload> {
  const id = await sendMessage(suite.serve().smtpPort, "sales@company.com", { name, mailFrom: "a@partner.example", bytes: forwarding(inner), expected: {} });
  return (await suite.postOf(id, `the post of ${name}`)).post;
}

test("a multipart forward with a header line that starts no field: the post's text has its words", async () => {
  const post = await postOf("non-field", `From: boss@partner.example\r\nSubject: urgent\r\n${WORDS}\r\nContent-Type: multipart/mixed; boundary="i"\r\n\r\n${PARTS}`);
  expect(post.rule).toBe("wire-review");
  expect(post.text).toContain(WORDS);
  expect(post.text).toContain("Subject: urgent");
  expect(post.text).toContain("inner text");
  // The forward's file, once.
  expect(post.attachments.map((a) => a.filename)).toEqual(["invoice.pdf"]);
}, 60_000);

test("a multipart forward with a line of only spaces in its header: the post's text has the words after it", async () => {
  const post = await postOf("space-line", `From: boss@partner.example\r\nSubject: urgent\r\n \r\n${WORDS}\r\nContent-Type: multipart/mixed; boundary="i"\r\n\r\n${PARTS}`);
  expect(post.rule).toBe("wire-review");
  expect(post.text).toContain(WORDS);
  expect(post.text).toContain("inner text");
  expect(post.attachments.map((a) => a.filename)).toEqual(["invoice.pdf"]);
}, 60_000);

test("a forward that is itself a forward (message/rfc822 in message/rfc822) with such a line: the post's text has its words", async () => {
  const post = await postOf("forward-of-forward", `From: boss@partner.example\r\nSubject: urgent\r\nContent-Type: message/rfc822\r\n${WORDS}\r\n\r\nFrom: c@x.example\r\nSubject: inner\r\n\r\nhello\r\n`);
  expect(post.rule).toBe("wire-review");
  expect(post.text).toContain(WORDS);
  expect(post.text).toContain("hello");
}, 60_000);

test("a one-part forward with such a line showed its words already, and shows them once", async () => {
  const post = await postOf("text-forward", `From: boss@partner.example\r\nSubject: urgent\r\n${WORDS}\r\nMIME-Version: 1.0\r\n\r\nregards\r\n`);
  expect(post.text).toContain(WORDS);
  expect(post.text!.split(WORDS).length).toBe(2);
}, 60_000);
