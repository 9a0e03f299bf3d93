/**
 * A webhook post describes the message the rules classified (found by mutation fuzzing of the
 * corpus, bare-CR / LF-CR line endings): the rules read a message with bare CRs and LFs as CRLF,
 * as the relay sends it (extract.ts), and the payload's subject, from, to and attachments are
 * read the same way, while `raw` stays the stored bytes. The payload was decoded from the bytes as
 * stored: `Subject: x<CR>Content-Type: multipart/mixed…` was one Subject there, and a webhook rule
 * on `attachment ends_with .pdf` posted a payload without the .pdf and with another subject.
 */
import { expect, test } from "bun:test";
import { buildWebhookPayload } from "../../src/act/webhook-payload.ts";
import { webhookBody } from "../../src/act/webhook-body.ts";
import { extractFacts } from "../../src/parse/extract.ts";
import type { Envelope } from "../../src/types.ts";

const ENVELOPE: Envelope = { mailFrom: "a@sender.example", rcptTo: ["b@company.com"], clientIp: "192.0.2.1", helo: "mx.example.org", tls: false };

async function payloadOf(raw: Buffer) {
  const fields = await buildWebhookPayload({ id: "01m4z7fjx44hhabeprt5ekyv55", receivedAt: 0, rule: "pdf", category: "c", envelope: ENVELOPE, raw }, 0);
  return JSON.parse(webhookBody(fields, raw).toString("utf8"));
}

test("bare CRs in the header: the payload's subject, from and attachments are the ones the rules saw", async () => {
  const raw = Buffer.from(
    "From: Boss <boss@sender.example>\r\nSubject: quarterly report\rContent-Type: multipart/mixed; boundary=b\r\nTo: b@company.com\r\n\r\n" +
      "--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
      '--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="report.pdf"\r\n\r\nJVBERi0=\r\n--b--\r\n',
    "latin1",
  );
  const facts = await extractFacts(raw, ENVELOPE);
  expect(facts.subject).toBe("quarterly report");
  expect(facts.attachments).toEqual(["report.pdf"]);
  const p = await payloadOf(raw);
  expect(p.subject).toBe(facts.subject);
  expect(p.attachments.map((a: { filename: string }) => a.filename)).toEqual(facts.attachments);
  expect(p.text).toBe("see attached\n");
  expect(Buffer.from(p.raw, "base64").equals(raw)).toBe(true);
  expect(p.size).toBe(raw.byteLength);
});

test("LF CR line ends (an empty line once normalised): the header ends where the rules' header ends", async () => {
  // "\n\r" is LF then CR: as CRLF CRLF an empty line, so From and To are body text to the rules.
  const raw = Buffer.from("Subject: hi\n\rFrom: ceo@company.com\r\nTo: x@company.com\r\n\r\nbody\r\n", "latin1");
  const facts = await extractFacts(raw, ENVELOPE);
  expect(facts.from).toBe("");
  const p = await payloadOf(raw);
  expect(p.subject).toBe("hi");
  expect(p.from).toBeNull();
  expect(p.to).toEqual([]);
  expect(Buffer.from(p.raw, "base64").equals(raw)).toBe(true);
});
