/**
 * `mailgw test message.eml` (a subprocess, as an admin runs it) on messages where the facts the
 * rules see differed from what Python's email package (and the mail clients that read as it
 * does) show, found by a differential of the corpus: the rule that should match now does.
 */
import { expect, test } from "bun:test";
import { dryRunner } from "./dry-run.ts";

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - name: wire-fraud
    priority: 100
    category: fraud
    action: reject
    conditions:
      - { field: body, operator: contains, value: wire transfer }
  - name: second-sender
    priority: 95
    category: fraud
    action: reject
    conditions:
      - { field: from, operator: equals, value: bobby@x.example }
  - name: bare-cc
    priority: 94
    category: internal
    action: drop
    conditions:
      - { field: cc, operator: equals, value: eryq }
  - name: greek-bill
    priority: 90
    category: bills
    action: archive
    conditions:
      - { field: body, operator: contains, value: "τα αναλυτικά στοιχεία" }
`;

const dryRun = dryRunner("fields-s10-cli-", RULES);

/** The decision `mailgw test FILE --json` prints for `raw`. */
async function decide(name: string, raw: string): Promise<{ rule: string | null; action: string }> {
  const json = await dryRun(name, raw);
  return { rule: json.decision.rule ?? null, action: json.decision.action };
}

test("a line of text among the header fields: Python and a Postfix relay show it as the body, and the body rule matches it", async () => {
  const raw = "From: boss@partner.example\r\nTo: sales@company.com\r\nSubject: urgent\r\nPlease send the wire transfer today\r\nMIME-Version: 1.0\r\n\r\n";
  expect(await decide("non-field-line", raw)).toEqual({ rule: "wire-fraud", action: "reject" });
});

test("the same line in the header of a message forwarded inline (message/rfc822): Python shows it as the forward's text, and the body rule matches it", async () => {
  const inner = "From: boss@partner.example\r\nSubject: urgent\r\nPlease send the wire transfer today\r\nMIME-Version: 1.0\r\n\r\n";
  const raw =
    "From: a@partner.example\r\nTo: sales@company.com\r\nSubject: Fwd: urgent\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n" +
    `--b\r\nContent-Type: text/plain\r\n\r\nsee below\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n${inner}--b--\r\n`;
  expect(await decide("nested-non-field-line", raw)).toEqual({ rule: "wire-fraud", action: "reject" });
});

test("From: with two addresses and no comma between: Python lists both, and a from rule matches the second", async () => {
  for (const from of ["Bob <bob@x.example> Bobby <bobby@x.example>", "Bob <bob@x.example> bobby@x.example"]) {
    const raw = `From: ${from}\r\nTo: sales@company.com\r\nSubject: hi\r\n\r\nhello\r\n`;
    expect(await decide("two-senders", raw)).toEqual({ rule: "second-sender", action: "reject" });
  }
});

test("Cc: with an entry that is a local part alone: Python lists it, and a cc rule matches it; as a To default it is no envelope recipient", async () => {
  const raw = "From: a@partner.example\r\nTo: sales@company.com, eryq\r\nCc: alice@x.example, eryq\r\nSubject: hi\r\n\r\nhello\r\n";
  const json = await dryRun("bare-cc", raw);
  expect({ rule: json.decision.rule, cc: json.facts.cc, to: json.facts.to }).toEqual({ rule: "bare-cc", cc: ["alice@x.example", "eryq"], to: ["sales@company.com", "eryq"] });
  expect({ rcpt: json.facts.rcpt, refused: json.refusedRecipients }).toEqual({ rcpt: ["sales@company.com"], refused: [] });
});

test("To: Smith, John <john@…> (a 'Last, First' name without quotes): no surname in to or cc", async () => {
  const raw = "From: a@partner.example\r\nTo: Smith, John <john@company.com>, Doe, Jane <jane@company.com>\r\nCc: Roe, Rick <rick@company.com>\r\nSubject: hi\r\n\r\nhello\r\n";
  const json = await dryRun("last-first", raw);
  expect({ to: json.facts.to, cc: json.facts.cc }).toEqual({ to: ["john@company.com", "jane@company.com"], cc: ["rick@company.com"] });
});

test("a header read both ways whose readings parse the same attachments lists each once; a name the message has twice stays twice", async () => {
  const part = (name: string) => `--b\r\nContent-Type: application/pdf; name="${name}"\r\nContent-Disposition: attachment; filename="${name}"\r\n\r\nJVBER\r\n`;
  const raw =
    "From: a@partner.example\r\nTo: sales@company.com\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\nSubject: hi\r\nPlease see the quote\r\n" +
    `Content-Transfer-Encoding: 7bit\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n${part("quote.pdf")}${part("scan.pdf")}${part("scan.pdf")}--b--\r\n`;
  const { facts } = await dryRun("both-readings-attachments", raw);
  expect(facts.attachments).toEqual(["quote.pdf", "scan.pdf", "scan.pdf"]);
  expect(facts.attachmentTypes).toEqual(["application/pdf", "application/pdf", "application/pdf"]);
});

const HTML_HEAD = "From: a@partner.example\r\nTo: sales@company.com\r\nSubject: hi\r\nContent-Type: text/html; charset=utf-8\r\n\r\n";

test("an HTML body in entities, as PHP's htmlentities() writes Greek: the rule for its words matches", async () => {
  const raw = `${HTML_HEAD}<p>&Gamma;&iota;&alpha; &tau;&alpha; &alpha;&nu;&alpha;&lambda;&upsilon;&tau;&iota;&kappa;&#940; &sigma;&tau;&omicron;&iota;&chi;&epsilon;&#943;&alpha;</p>\r\n`;
  expect(await decide("greek-entities", raw)).toEqual({ rule: "greek-bill", action: "archive" });
});

test("a '<' that opens no tag in an HTML body is text: the words after it reach the body rule", async () => {
  const raw = `${HTML_HEAD}<p>Amounts < 5,000 EUR: please send the wire transfer today</p>\r\n`;
  expect(await decide("lt-text", raw)).toEqual({ rule: "wire-fraud", action: "reject" });
});
