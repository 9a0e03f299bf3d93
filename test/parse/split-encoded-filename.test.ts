/**
 * An attachment name in RFC 2047 encoded words split inside a multibyte character (Korean and
 * Japanese mailers cut long names by bytes) reads whole everywhere: in the `attachment` fact and
 * as the webhook's `filename`, as Python's email package and Thunderbird show it. postal-mime's
 * own decoding gave `견���서.pdf` for the webhook's `filename` (and as a second fact value).
 */
import { expect, test } from "bun:test";
import { buildWebhookPayload } from "../../src/act/webhook-payload.ts";
import { extractFacts } from "../../src/parse/extract.ts";

/** `text`'s UTF-8 bytes as two B words, cut after `cut` bytes (inside a character). */
function splitWords(text: string, cut: number): string {
  const bytes = Buffer.from(text);
  const word = (part: Buffer) => `=?utf-8?B?${part.toString("base64")}?=`;
  return `${word(bytes.subarray(0, cut))} ${word(bytes.subarray(cut))}`;
}

function message(nameParameters: string): Uint8Array {
  return Buffer.from(
    [
      "From: a@example.kr",
      "To: b@company.com",
      "Subject: x",
      "MIME-Version: 1.0",
      'Content-Type: multipart/mixed; boundary="BB"',
      "",
      "--BB",
      "Content-Type: text/plain; charset=utf-8",
      "",
      "see attached",
      "--BB",
      nameParameters,
      "Content-Transfer-Encoding: base64",
      "",
      "JVBERi0xLjQK",
      "--BB--",
      "",
    ].join("\r\n"),
  );
}

const envelope = { mailFrom: "a@example.kr", rcptTo: ["b@company.com"], clientIp: "127.0.0.1", helo: "h", tls: false };

test.each([
  ["Content-Type name=", `Content-Type: application/pdf; name="${splitWords("견적서.pdf", 4)}"`, "견적서.pdf"],
  ["Content-Disposition filename=", `Content-Type: application/pdf\r\nContent-Disposition: attachment; filename="${splitWords("請求書_最終版.pdf", 5)}"`, "請求書_最終版.pdf"],
])("%s split inside a character", async (_where, header, name) => {
  const raw = message(header);
  const facts = await extractFacts(raw, envelope);
  expect(facts.attachments).toEqual([name]);
  const payload = await buildWebhookPayload({ id: "m1", receivedAt: 0, rule: "r", category: "c", envelope, raw }, 0);
  expect(payload.attachments.map((a) => [a.filename, a.names])).toEqual([[name, [name]]]);
});

test("a name in one encoded word, and a plain one, are unchanged", async () => {
  const raw = message(`Content-Type: application/pdf; name="=?iso-2022-jp?B?GyRCQEE1YT1xGyhCLnBkZg==?="\r\nContent-Disposition: attachment; filename="invoice.pdf"`);
  const payload = await buildWebhookPayload({ id: "m1", receivedAt: 0, rule: "r", category: "c", envelope, raw }, 0);
  expect(payload.attachments.map((a) => [a.filename, a.names])).toEqual([["invoice.pdf", ["invoice.pdf", "請求書.pdf"]]]);
});
