/**
 * The two readings of a header block ended by a line of spaces (src/parse/header-readings.ts):
 * when the second MIME parse can be skipped (it would find what the first found), how the two
 * readings' texts share the body cap, and that a webhook's payload shows what the rules saw.
 */
import { expect, test } from "bun:test";
import { buildWebhookPayload } from "../../src/act/webhook-payload.ts";
import { splitHeaderBlock } from "../../src/parse/header-block.ts";
import { foldedReading, joinContent, sameMimeParse } from "../../src/parse/header-readings.ts";
import { MAX_BODY_TEXT_CHARS } from "../../src/parse/limits.ts";

function readings(text: string) {
  const raw = new TextEncoder().encode(text);
  const first = splitHeaderBlock(raw);
  const folded = foldedReading(raw, first);
  if (folded === null) throw new Error("not read both ways");
  return sameMimeParse(raw, first, folded);
}

const BODY = "\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b1--\r\n";

test("the second parse is skipped only when it would find the same: same MIME fields, a multipart, no boundary-like line between", () => {
  // The Content-Type before the spaces, a junk line and a field after: the same multipart either way.
  expect(readings(`Content-Type: multipart/mixed; boundary=b1\r\n \r\nX\r\nFrom: a@b.example${BODY}`)).toBe(true);
  // A line starting with "--" between the two bodies' starts may be a part of the first reading's body.
  expect(readings(`Content-Type: multipart/mixed; boundary=b1\r\n \r\n--b1\r\nFrom: a@b.example${BODY}`)).toBe(false);
  expect(readings(`Content-Type: multipart/mixed; boundary=b1\r\n \r\nX\r\n--b1${BODY}`)).toBe(false);
  // A MIME field only past the spaces, or a different one: different parses.
  expect(readings(`Subject: hi\r\n \r\nX\r\nContent-Type: multipart/mixed; boundary=b1${BODY}`)).toBe(false);
  expect(readings(`Content-Type: multipart/mixed; boundary=b1\r\n \r\nX\r\nContent-Transfer-Encoding: base64${BODY}`)).toBe(false);
  // Not a multipart: the stretch between is text of the first reading's body.
  expect(readings(`Content-Type: text/plain\r\n \r\nX\r\nFrom: a@b.example${BODY}`)).toBe(false);
});

test("both readings' texts are kept, the same text once; over the cap each keeps at least half of it", () => {
  const facts = (body: string, attachments: string[] = []) => ({ body, attachments, attachmentTypes: attachments.map(() => "application/octet-stream") });
  expect(joinContent(facts("a"), facts("b", ["x.exe"]))).toEqual(facts("a\nb", ["x.exe"]));
  expect(joinContent(facts("same"), facts("same")).body).toBe("same");
  // The same attachments in both readings once; what one reading has more of, added.
  expect(joinContent(facts("a", ["x.pdf", "y.pdf", "y.pdf"]), facts("a", ["y.pdf", "x.pdf", "z.exe"])).attachments).toEqual(["x.pdf", "y.pdf", "y.pdf", "z.exe"]);
  expect(joinContent(facts("a", ["y.pdf"]), facts("a", ["y.pdf", "y.pdf"])).attachments).toEqual(["y.pdf", "y.pdf"]);
  expect(joinContent(facts(""), facts("b")).body).toBe("b");
  const long = "x".repeat(MAX_BODY_TEXT_CHARS);
  const joined = joinContent(facts(long), facts("wire transfer")).body;
  expect(joined.length).toBeLessThanOrEqual(MAX_BODY_TEXT_CHARS);
  expect(joined.endsWith("\nwire transfer")).toBe(true);
  const both = joinContent(facts(long), facts("y".repeat(MAX_BODY_TEXT_CHARS))).body;
  expect(both.length).toBe(MAX_BODY_TEXT_CHARS);
  expect(both.indexOf("y")).toBeLessThanOrEqual(MAX_BODY_TEXT_CHARS / 2 + 1);
});

test("a webhook's payload has the fields and attachments of both readings, as the rules see them", async () => {
  const envelope = { mailFrom: "a@b.example", rcptTo: ["v@company.com"], clientIp: "192.0.2.1", helo: "h", tls: false };
  const post = (text: string) => buildWebhookPayload({ id: "x", receivedAt: 0, rule: "r", category: "c", envelope, raw: new TextEncoder().encode(text) }, 0);
  const from = await post("Subject: hi\r\n \r\nX\r\nFrom: CEO <ceo@company.com>\r\n\r\nhello\r\n");
  expect(from.from?.address).toBe("ceo@company.com");
  expect(from.parseError).toContain("read two ways");
  const exe = await post(
    "From: a@b.example\r\nSubject: hi\r\n \r\nX\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n" +
      "--b1\r\nContent-Type: application/octet-stream; name=evil.exe\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b1--\r\n",
  );
  expect(exe.attachments.map((a) => a.filename)).toEqual(["evil.exe"]);
  expect(exe.text).toContain("hello");
});

test("a webhook's payload has the text from a header line that starts no field on, as the rules read it (and Python and a Postfix relay show it)", async () => {
  const raw = Buffer.from("From: boss@partner.example\r\nTo: sales@company.com\r\nSubject: urgent\r\nPlease send the wire transfer today\r\nMIME-Version: 1.0\r\n\r\nthanks\r\n");
  const payload = await buildWebhookPayload({ id: "x", receivedAt: 0, rule: null, category: "c", envelope: { mailFrom: "a@b.example", rcptTo: ["v@company.com"], clientIp: "192.0.2.1", helo: "h", tls: false }, raw }, 0);
  expect(payload.text).toContain("Please send the wire transfer today");
  expect(payload.text).toContain("thanks");
  expect(payload.subject).toBe("urgent");
  expect(payload.parseError).toContain("a line that is no header field");
});

test("a webhook's payload lists a file both readings parse once (two equal files of one reading stay two)", async () => {
  // Only a Content-Transfer-Encoding past the spaces tells the readings apart: the same multipart, parsed twice.
  const part = (name: string) => `--b1\r\nContent-Type: application/pdf; name=${name}\r\nContent-Disposition: attachment; filename=${name}\r\n\r\nJVBERi0=\r\n`;
  const raw = Buffer.from(`From: a@b.example\r\nContent-Type: multipart/mixed; boundary=b1\r\n \r\nX\r\nContent-Transfer-Encoding: 7bit\r\n\r\n${part("a.pdf")}${part("b.pdf")}${part("b.pdf")}--b1--\r\n`);
  const payload = await buildWebhookPayload({ id: "x", receivedAt: 0, rule: null, category: "c", envelope: { mailFrom: "a@b.example", rcptTo: ["v@company.com"], clientIp: "192.0.2.1", helo: "h", tls: false }, raw }, 0);
  expect(payload.attachments.map((a) => a.filename)).toEqual(["a.pdf", "b.pdf", "b.pdf"]);
});
