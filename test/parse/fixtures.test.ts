/** Every .eml fixture yields the expected facts (table-driven), envelope copied, auth "none". */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { extractFacts } from "../../src/parse/extract.ts";
import type { Envelope, MessageFacts } from "../../src/types.ts";

const FIXTURES = join(import.meta.dir, "../fixtures/eml");
const ENVELOPE: Envelope = { mailFrom: "bounce@example.net", rcptTo: ["sales@company.com"], clientIp: "192.0.2.7", helo: "mx.example.net", tls: true };

type Expected = Partial<Omit<MessageFacts, "headers">> & { header?: [string, string[]] };

const CASES: Record<string, Expected> = {
  "utf8-korean-subject.eml": {
    subject: "견적 요청",
    from: "kim@example.kr",
    fromName: "김철수",
    to: ["sales@company.com", "lee@company.com"],
    cc: ["a@company.com", "b@company.com", "c@other.example"],
    body: "안녕하세요, 견적 부탁드립니다.\n",
    header: ["x-custom", ["값"]],
  },
  "euc-kr-body.eml": { subject: "견적", body: "견적서 보내드립니다\n" },
  "raw-8bit-subject.eml": { subject: "견적" },
  "iso-2022-jp.eml": { subject: "日本語", body: "日本語\n" },
  "windows-1252.eml": { subject: "Café price € 5", fromName: "René", from: "rene@example.fr", body: "Prix: 5 € “café”\n" },
  "html-only.eml": { subject: "Newsletter", body: "Hello & welcome to our sale!\n\nSecond line <ok>" },
  "attachments.eml": {
    body: "See attached.\n",
    attachments: ["invoice.pdf", "견적.exe", "사진.png"],
    attachmentTypes: ["application/pdf", "application/octet-stream", "image/png"],
  },
  "nested-rfc822.eml": {
    body: "Forwarding this.\n\nInner order text.\n",
    attachments: ["inner.docx"],
    attachmentTypes: ["message/rfc822", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"],
  },
  // Each name a part gives counts (postal-mime's choice first): mail clients differ in which one they save.
  "two-names.eml": {
    body: "Invoices attached.\n",
    attachments: ["invoice.pdf", "invoice.exe", "report.pdf", "report.scr", "photo.js", "photo.jpg", "list.csv"],
    attachmentTypes: ["application/octet-stream", "application/pdf", "image/jpeg", "text/csv"],
  },
  "broken-mime.eml": { subject: "broken", from: "broken@example.com", attachments: ["half.pdf"] },
  "spam-subject.eml": { subject: "[SPAM] cheap pills", from: "deals@spam.example", fromName: "Pharmacy" },
  "bare-lf.eml": { subject: "bare line endings", to: ["sales@company.com"], body: "Body line one\nBody line two\n" },
  "nul-bytes.eml": { subject: "has\u0000nul", body: "before\u0000after\n" },
};

describe("fixtures → facts", () => {
  for (const [file, expected] of Object.entries(CASES)) {
    test(file, async () => {
      const raw = readFileSync(join(FIXTURES, file));
      const facts = await extractFacts(raw, ENVELOPE);
      const { header, ...fields } = expected;
      expect(facts).toMatchObject(fields);
      if (header) expect(facts.headers.get(header[0])).toEqual(header[1]);
      expect(facts.size).toBe(raw.byteLength);
      expect(facts.parseError).toBeUndefined();
    });
  }

  test("envelope fields are copied and auth results default to none", async () => {
    const facts = await extractFacts(readFileSync(join(FIXTURES, "spam-subject.eml")), ENVELOPE);
    expect(facts).toMatchObject({
      mailFrom: "bounce@example.net",
      rcpt: ["sales@company.com"],
      clientIp: "192.0.2.7",
      helo: "mx.example.net",
      tls: true,
      spf: "none",
      dkim: "none",
      dmarc: "none",
    });
  });

  test("auth results passed in are used", async () => {
    const facts = await extractFacts(readFileSync(join(FIXTURES, "spam-subject.eml")), ENVELOPE, { auth: { spf: "pass", dmarc: "fail" } });
    expect([facts.spf, facts.dkim, facts.dmarc]).toEqual(["pass", "none", "fail"]);
  });

  test("header map: lower-case names, every value in order, decoded", async () => {
    const raw = new TextEncoder().encode("Received: a\r\nRECEIVED: b\r\nX-Q: =?utf-8?Q?caf=C3=A9?=\r\nFrom\r\n : <first@x.example>\r\nFrom: second@x.example\r\n\r\n");
    const facts = await extractFacts(raw, ENVELOPE);
    expect(facts.headers.get("received")).toEqual(["a", "b"]);
    expect(facts.headers.get("x-q")).toEqual(["café"]);
    expect(facts.from).toBe("first@x.example"); // folded name: unfolded before parsing, first From wins
  });

  test("every From mailbox and display name is a fact (a spoofed second one included); the first Subject is the subject", async () => {
    const raw = new TextEncoder().encode('From: a@x.example, "CEO" <Ceo@Company.com>\r\nSubject: first\r\nSubject: second\r\n\r\nhi\r\n');
    const facts = await extractFacts(raw, ENVELOPE);
    expect([facts.from, facts.fromName]).toEqual(["a@x.example", ""]);
    expect(facts.fromAll).toEqual(["a@x.example", "ceo@company.com"]);
    expect(facts.fromNames).toEqual(["CEO"]);
    expect(facts.subject).toBe("first");
    expect(facts.headers.get("subject")).toEqual(["first", "second"]);
  });

  test("empty and garbage input still yield facts", async () => {
    for (const raw of [new Uint8Array(0), new Uint8Array([0, 255, 10, 13, 0]), new TextEncoder().encode("no header here")]) {
      const facts = await extractFacts(raw, ENVELOPE);
      expect(facts.subject).toBe("");
      expect(facts.rcpt).toEqual(["sales@company.com"]);
    }
  });
});
