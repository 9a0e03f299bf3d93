/**
 * Malformed-but-readable messages give the rules the facts a mail client shows, so they cannot
 * be used to slip past a rule (found by comparing the corpus's facts with Python's email
 * package): a comment or folding whitespace inside an address (RFC 5322 CFWS:
 * `<ceo@company.com (Chief)>`) is not part of it; a header block ended by a line holding a
 * space does not hide the body from `body` rules; nor does a Content-Type that is not a type;
 * UTF-7 text (which Outlook shows) is decoded.
 */
import { expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { extractFacts, extractFactsFromFile } from "../../src/parse/extract.ts";
import { classify } from "../../src/rules/classify.ts";
import { validMimeType } from "../../src/parse/part-names.ts";
import { parseRules } from "../../src/rules/load.ts";
import type { Envelope } from "../../src/types.ts";

const ENVELOPE: Envelope = { mailFrom: "x@example.org", rcptTo: ["sales@company.com"], clientIp: "192.0.2.1", helo: "mx.example.org", tls: false };

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: ceo-spoof, priority: 10, action: reject, category: spoof, conditions: [{ field: from, operator: equals, value: ceo@company.com }] }
  - { name: to-sales, priority: 5, action: drop, category: sales, conditions: [{ field: to, operator: equals, value: sales@company.com }] }
  - { name: invoice, priority: 40, action: reject, category: subject, conditions: [{ field: subject, operator: contains, value: invoice }] }
  - { name: exe, priority: 35, action: reject, category: exe, conditions: [{ field: attachment, operator: ends_with, value: .exe }] }
  - { name: pdf, priority: 30, action: reject, category: pdf, conditions: [{ field: attachment_type, operator: equals, value: application/pdf }] }
  - { name: wire, priority: 20, action: reject, category: fraud, conditions: [{ field: body, operator: contains, value: wire transfer }] }
`;

function message(from: string, to: string): Uint8Array {
  return new TextEncoder().encode(`From: ${from}\r\nTo: ${to}\r\nSubject: hi\r\n\r\nbody\r\n`);
}

test("a comment inside From's or To's address does not hide it from a rule", async () => {
  const parsed = parseRules(RULES, "rules.yaml");
  if (!parsed.ok) throw new Error("rules did not compile");
  // Without angle brackets too, folding space around the '@' or a dot is no part of the address (Python reads ceo@company.com).
  for (const from of ["CEO <ceo@company.com (Chief)>", "<ceo(x)@company.com>", "CEO <ceo @ company.com>", "ceo(x)@company.com", "ceo @ company.com", "ceo @company.com", "ceo@ company.com", '"ceo" @company.com', '"ceo"(x)@company.com', "ceo@company .com", "ceo@company. com"]) {
    const facts = await extractFacts(message(from, "Sales <sales(team)@company.com>"), ENVELOPE);
    expect({ from, address: facts.from }).toEqual({ from, address: "ceo@company.com" });
    expect(facts.to).toEqual(["sales@company.com"]);
    expect(classify(facts, parsed.rules).decision.rule).toBe("ceo-spoof");
  }
});

test("a bare From address joined across a space is also read as postal-mime shows it", async () => {
  // Python reads ceo@company.com.evil.example (obsolete CFWS in the domain); postal-mime, and the
  // clients that read as it does, show ceo@company.com: the spoofing rule must see that too.
  const parsed = parseRules(RULES, "rules.yaml");
  if (!parsed.ok) throw new Error("rules did not compile");
  for (const from of ["ceo@company.com .evil.example", "ceo@company.com (x) .evil.example", "x @ ceo@company.com"]) {
    const facts = await extractFacts(message(from, "sales@company.com"), ENVELOPE);
    expect({ from, fromAll: facts.fromAll.includes("ceo@company.com") }).toEqual({ from, fromAll: true });
    expect(classify(facts, parsed.rules).decision.rule).toBe("ceo-spoof");
  }
});

test("a header block ended by a line holding only a space does not hide the body from a body rule", async () => {
  const parsed = parseRules(RULES, "rules.yaml");
  if (!parsed.ok) throw new Error("rules did not compile");
  for (const blank of [" ", "\t", "  \t"]) {
    const raw = `From: a@b.example\r\nTo: sales@company.com\r\nSubject: hi\r\nContent-Type: text/plain; charset=utf-8\r\n${blank}\r\nPlease send the wire transfer today.\r\n`;
    const facts = await extractFacts(new TextEncoder().encode(raw), ENVELOPE);
    expect({ blank, body: facts.body.trim() }).toEqual({ blank, body: "Please send the wire transfer today." });
    expect(classify(facts, parsed.rules).decision.rule).toBe("wire");
  }
});

test("past a line of only spaces, the fields and attachments a mail client still reads are the rules' too, and so is the body", async () => {
  // Thunderbird and postal-mime read on to the empty line (taking the From and the multipart
  // structure there); Python shows the text after the spaces as the body. Each hid something.
  const parsed = parseRules(RULES, "rules.yaml");
  if (!parsed.ok) throw new Error("rules did not compile");
  const dir = mkdtempSync(join(tmpdir(), "mailgw-two-readings-"));
  const cases: [string, string][] = [
    ["Subject: hi\r\nMessage-ID: <1@b.example>\r\n \r\nX\r\nFrom: CEO <ceo@company.com>\r\n\r\nhello\r\n", "ceo-spoof"],
    [
      "From: a@b.example\r\nSubject: hi\r\n \r\nX\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n" +
        "--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=evil.exe\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b1--\r\n",
      "exe",
    ],
    ["From: a@b.example\r\nSubject: hi\r\n \r\nPlease send the wire transfer.\r\nNote: today\r\n\r\nthanks\r\n", "wire"],
    // Base64 text only the folded reading decodes.
    ["From: a@b.example\r\nSubject: hi\r\n \r\nX\r\nContent-Transfer-Encoding: base64\r\n\r\n" + Buffer.from("Please send the wire transfer.").toString("base64") + "\r\n", "wire"],
  ];
  for (const [i, [raw, rule]] of cases.entries()) {
    const bytes = new TextEncoder().encode(raw);
    const path = join(dir, `${i}.eml`);
    writeFileSync(path, bytes);
    for (const facts of [await extractFacts(bytes, ENVELOPE), await extractFactsFromFile(path, ENVELOPE)]) {
      expect({ i, rule: classify(facts, parsed.rules).decision.rule }).toEqual({ i, rule });
      expect(facts.parseError).toContain("read two ways");
    }
  }
  // The folded reading adds to the facts, it does not replace them: Subject and From of the first stay first.
  const both = await extractFacts(new TextEncoder().encode("Subject: first\r\nFrom: a@b.example\r\n \r\nX\r\nSubject: second\r\nFrom: c@d.example\r\n\r\nhello\r\n"), ENVELOPE);
  expect({ subject: both.subject, from: both.from, fromAll: both.fromAll }).toEqual({ subject: "first", from: "a@b.example", fromAll: ["a@b.example", "c@d.example"] });
});

test("a forwarded message (message/rfc822) whose header has a line of only spaces is read both ways too", async () => {
  // postal-mime and Thunderbird show the inner .exe (they read on to the empty line); the
  // first reading alone took the inner message for text/plain.
  const parsed = parseRules(RULES, "rules.yaml");
  if (!parsed.ok) throw new Error("rules did not compile");
  const inner =
    "From: a@b.example\r\nSubject: fwd\r\n \r\nX\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=in\r\n\r\n--in\r\nContent-Type: text/plain\r\n\r\nhello\r\n" +
    "--in\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=evil.exe\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--in--\r\n";
  const raw = `From: a@b.example\r\nTo: sales@company.com\r\nSubject: hi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=out\r\n\r\n--out\r\nContent-Type: text/plain\r\n\r\nsee below\r\n--out\r\nContent-Type: message/rfc822\r\n\r\n${inner}\r\n--out--\r\n`;
  const bytes = new TextEncoder().encode(raw);
  const path = join(mkdtempSync(join(tmpdir(), "mailgw-two-readings-")), "nested.eml");
  writeFileSync(path, bytes);
  for (const facts of [await extractFacts(bytes, ENVELOPE), await extractFactsFromFile(path, ENVELOPE)]) {
    expect(facts.attachments).toContain("evil.exe");
    expect(classify(facts, parsed.rules).decision.rule).toBe("exe");
  }
});

test("text in a part's header past a line that is no field is body text too (Python shows it as the part's text)", async () => {
  const parsed = parseRules(RULES, "rules.yaml");
  if (!parsed.ok) throw new Error("rules did not compile");
  const multipart = (part: string) => `From: a@b.example\r\nSubject: hi\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\n${part}--b1--\r\n`;
  for (const part of [
    "Content-Type: text/plain\r\n \r\nPlease send the wire transfer today.\r\n",
    "Content-Type: text/plain\r\nPlease send the wire transfer today.\r\nX-Note: y\r\n\r\nhello\r\n",
    "Please send the wire transfer today.\r\n",
    "Content-Type: text/html\r\n\t\r\nPlease send the wire transfer : today\r\n",
  ]) {
    const facts = await extractFacts(new TextEncoder().encode(multipart(part)), ENVELOPE);
    expect({ part, rule: classify(facts, parsed.rules).decision.rule }).toEqual({ part, rule: "wire" });
  }
  // Fields and continuation lines are no such text; a name with a space before its colon is (as for Python).
  const clean = await extractFacts(new TextEncoder().encode(multipart("Content-Type: text/plain;\r\n charset=utf-8\r\nX-Note: y\r\n\r\nhello\r\n")), ENVELOPE);
  expect(clean.body.trim()).toBe("hello");
  const spaced = await extractFacts(new TextEncoder().encode(multipart("Content-Type: text/plain\r\nX-Note : y\r\n\r\nhello\r\n")), ENVELOPE);
  expect(spaced.body.trim()).toBe("X-Note : y\nhello");
});

test("text past the break in a part postal-mime files as an attachment (a field after the break) is body text too (Python shows the part as text/plain)", async () => {
  const parsed = parseRules(RULES, "rules.yaml");
  if (!parsed.ok) throw new Error("rules did not compile");
  const multipart = (part: string) => `From: a@b.example\r\nSubject: hi\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/html\r\n\r\n<p>Hello</p>\r\n--b1\r\n${part}--b1--\r\n`;
  for (const part of [
    "X-Note: hi\r\nPlease send the wire transfer today\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=\"a.txt\"\r\n\r\nhello\r\n",
    "X-Note: hi\r\nPlease send the wire transfer today\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n",
  ]) {
    const facts = await extractFacts(new TextEncoder().encode(multipart(part)), ENVELOPE);
    expect({ part, rule: classify(facts, parsed.rules).decision.rule }).toEqual({ part, rule: "wire" });
    // The HTML part's text is still there.
    expect(facts.body).toContain("Hello");
  }
});

test("a part past whose break postal-mime files an attachment: its content is body text when Python reads text/plain, and nothing is when Python reads a file too", async () => {
  const multipart = (part: string) => `From: a@b.example\r\nSubject: hi\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nA text section\r\n--b1\r\n${part}--b1--\r\n`;
  const hidden = await extractFacts(new TextEncoder().encode(multipart("X-Note: hi\r\nsee below\r\nContent-Disposition: attachment; filename=\"a.txt\"\r\n\r\nPlease send the wire transfer today\r\n")), ENVELOPE);
  expect(hidden.body).toContain("Please send the wire transfer today");
  // enmime low-quality/bad-header-wrap.eml: Python reads application/x-zip-compressed.
  const zip = await extractFacts(new TextEncoder().encode(multipart("Content-Transfer-Encoding: base64\r\nContent-Type: application/x-zip-compressed; x-unix-mode=0600;\r\nname=\"a.zip\"\r\nContent-Disposition: attachment; filename=\"a.zip\"\r\n\r\nPGh0bWw+Cg==\r\n")), ENVELOPE);
  expect(zip.body.trim()).toBe("A text section");
  expect(zip.attachments).toEqual(["a.zip"]);
});

test("an HTML part past whose break postal-mime files an attachment is body text as HTML: its tags and entities hide no word", async () => {
  const multipart = (part: string) => `From: a@b.example\r\nSubject: hi\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nA text section\r\n--b1\r\n${part}--b1--\r\n`;
  const html = "<p>Please send the w&#105;re <b>transfer</b> today</p>\r\n";
  const inline = await extractFacts(new TextEncoder().encode(multipart(`Content-Type: text/html\r\nsee below\r\n\r\n${html}`)), ENVELOPE);
  const attached = await extractFacts(new TextEncoder().encode(multipart(`Content-Type: text/html\r\nsee below\r\nContent-Disposition: attachment; filename="a.html"\r\n\r\n${html}`)), ENVELOPE);
  expect(inline.body).toContain("Please send the wire transfer today");
  expect(attached.body).toContain("Please send the wire transfer today");
});

test("a Content-Type that is not a type is read as text/plain, or as the type it starts with", async () => {
  expect(["text plain", "text", "<html>", "", " ; name=x", "text/plain>", "TEXT/HTML", "application/pdf name=x.pdf"].map(validMimeType))
    .toEqual(["text/plain", "text/plain", "text/plain", "text/plain", "text/plain", "text/plain", "text/html", "application/pdf"]);
  const parsed = parseRules(RULES, "rules.yaml");
  if (!parsed.ok) throw new Error("rules did not compile");
  const head = "From: a@b.example\r\nTo: sales@company.com\r\nSubject: hi\r\nMIME-Version: 1.0\r\n";
  for (const type of ["text plain", "text/plain>", "<html>", "text"]) {
    const top = `${head}Content-Type: ${type}\r\n\r\nPlease send the wire transfer today.\r\n`;
    const inPart = `${head}Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: ${type}\r\n\r\nPlease send the wire transfer today.\r\n--b--\r\n`;
    for (const raw of [top, inPart]) {
      const facts = await extractFacts(new TextEncoder().encode(raw), ENVELOPE);
      expect({ type, body: facts.body.trim(), types: facts.attachmentTypes }).toEqual({ type, body: "Please send the wire transfer today.", types: [] });
      expect(classify(facts, parsed.rules).decision.rule).toBe("wire");
    }
  }
  // An attachment whose type lost its ';' still has its type.
  const pdf = `${head}Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: application/pdf name="inv.pdf"\r\nContent-Disposition: attachment; filename="inv.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n`;
  const facts = await extractFacts(new TextEncoder().encode(pdf), ENVELOPE);
  expect(facts.attachmentTypes).toEqual(["application/pdf"]);
  expect(classify(facts, parsed.rules).decision.rule).toBe("pdf");
});

test("the spaces and comments RFC 2045 allows in a Content-Type do not make an attachment's type text/plain", async () => {
  expect(["application / pdf", "application/ pdf", "(scan) application/pdf", "application/(x)pdf", "text /html"].map(validMimeType))
    .toEqual(["application/pdf", "application/pdf", "application/pdf", "application/pdf", "text/html"]);
  const parsed = parseRules(RULES, "rules.yaml");
  if (!parsed.ok) throw new Error("rules did not compile");
  const head = "From: a@b.example\r\nTo: sales@company.com\r\nSubject: hi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n";
  for (const type of ["application / pdf", "(scan) application/pdf"]) {
    const raw = `${head}--b\r\nContent-Type: ${type}\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n`;
    const facts = await extractFacts(new TextEncoder().encode(raw), ENVELOPE);
    expect({ type, types: facts.attachmentTypes, body: facts.body.trim() }).toEqual({ type, types: ["application/pdf"], body: "see attached" });
    expect(classify(facts, parsed.rules).decision.rule).toBe("pdf");
  }
});

test("a part whose Content-Type is not a type but holds a '/' is body text past 64 KB too (the content cut reads its type as the parser does)", async () => {
  const parsed = parseRules(RULES, "rules.yaml");
  if (!parsed.ok) throw new Error("rules did not compile");
  const filler = "lorem ipsum dolor sit amet, consectetur adipiscing elit\r\n".repeat(2000); // ~116 KB
  for (const type of ["<text/plain>", '"text/plain"']) {
    const raw = `From: a@b.example\r\nTo: sales@company.com\r\nSubject: hi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: ${type}\r\n\r\n${filler}Please send the wire transfer today.\r\n--b--\r\n`;
    const facts = await extractFacts(new TextEncoder().encode(raw), ENVELOPE);
    expect({ type, rule: classify(facts, parsed.rules).decision.rule }).toEqual({ type, rule: "wire" });
  }
});

test("UTF-7 in a subject, a text part and a file name is read as UTF-7", async () => {
  const parsed = parseRules(RULES, "rules.yaml");
  if (!parsed.ok) throw new Error("rules did not compile");
  const part = (headers: string, body: string) => `--b\r\n${headers}\r\n\r\n${body}\r\n`;
  const message = (subject: string, parts: string[]) =>
    new TextEncoder().encode(`From: a@b.example\r\nTo: sales@company.com\r\nSubject: ${subject}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n${parts.join("")}--b--\r\n`);
  const text = part("Content-Type: text/plain; charset=utf-7", "Please send the +AHcAaQByAGU- transfer today.");
  const subject = await extractFacts(message("=?utf-7?Q?+AEkAbgB2AG8AaQBjAGU-?=", [text]), ENVELOPE);
  expect(subject.subject).toBe("Invoice");
  expect(subject.body.trim()).toBe("Please send the wire transfer today.");
  expect(classify(subject, parsed.rules).decision.rule).toBe("invoice");
  const body = await extractFacts(message("hi", [text]), ENVELOPE);
  expect(classify(body, parsed.rules).decision.rule).toBe("wire");
  const file = part('Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="=?utf-7?Q?evil+AC4-exe?="', "eHg=");
  const attached = await extractFacts(message("hi", [part("Content-Type: text/plain", "hello"), file]), ENVELOPE);
  expect(attached.attachments).toContain("evil.exe");
  expect(classify(attached, parsed.rules).decision.rule).toBe("exe");
});
