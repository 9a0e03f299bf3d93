/**
 * A top-level header line that starts no field (`This is an invalid header`, `Subject : x`, a
 * message with no header at all) ends the header for Python's email package and for Postfix,
 * which show it and what follows as the body (Postfix puts an empty line before it, and that is
 * what a relay delivers). mailgw reads on past it, as Thunderbird does, so the rules saw no such
 * text: they read it both ways now (found by a differential of the corpus against Python).
 */
import { expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { extractFacts, extractFactsFromFile } from "../../src/parse/extract.ts";
import { splitHeaderBlock } from "../../src/parse/header-block.ts";
import { classify } from "../../src/rules/classify.ts";
import { parseRules } from "../../src/rules/load.ts";
import type { Envelope } from "../../src/types.ts";

const ENVELOPE: Envelope = { mailFrom: "x@example.org", rcptTo: ["sales@company.com"], clientIp: "192.0.2.1", helo: "mx.example.org", tls: false };

/** apache/james-mime4j core/src/test/resources/testmsgs/malformedHeader-nocrlfcrlf.msg (Apache-2.0), byte for byte. */
const MIME4J_MALFORMED = "Subject: this is a subject\r\nThis is an invalid header\r\nAnotherHeader: is this an header or the first part of the body?\r\n\r\nBody text\r\n";
/** apache/james-mime4j malformedHeaderStartsBody-noheader.msg (Apache-2.0): no header at all. */
const MIME4J_NO_HEADER = "This is a simple message not having headers.\r\nThe whole text should be recognized as body.\r\n";
const CORPUS = "/work/shared/corpus/james-mime4j/testmsgs";

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: wire, priority: 20, action: reject, category: fraud, conditions: [{ field: body, operator: contains, value: wire transfer }] }
  - { name: invalid-header, priority: 10, action: drop, category: t, conditions: [{ field: body, operator: contains, value: "This is an invalid header" }] }
  - { name: no-header, priority: 9, action: drop, category: t, conditions: [{ field: body, operator: contains, value: "recognized as body" }] }
`;

function rules() {
  const parsed = parseRules(RULES, "rules.yaml");
  if (!parsed.ok) throw new Error("rules did not compile");
  return parsed.rules;
}

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

test("the corpus messages are the bytes above", () => {
  if (!existsSync(CORPUS)) return;
  expect(readFileSync(join(CORPUS, "malformedHeader-nocrlfcrlf.eml"), "latin1")).toBe(MIME4J_MALFORMED);
  expect(readFileSync(join(CORPUS, "malformedHeaderStartsBody-noheader.eml"), "latin1")).toBe(MIME4J_NO_HEADER);
});

test("text past a header line that is no field is body text, as Python shows it; the fields past it still count", async () => {
  const facts = await extractFacts(bytes(MIME4J_MALFORMED), ENVELOPE);
  expect(facts.subject).toBe("this is a subject");
  expect(facts.headers.get("anotherheader")).toEqual(["is this an header or the first part of the body?"]);
  expect(facts.body).toContain("Body text");
  expect(facts.body).toContain("This is an invalid header\nAnotherHeader: is this an header or the first part of the body?");
  expect(facts.parseError).toContain("a line that is no header field");
  expect(classify(facts, rules()).decision.rule).toBe("invalid-header");
});

test("a message with no header at all: its text is the body", async () => {
  const facts = await extractFacts(bytes(MIME4J_NO_HEADER), ENVELOPE);
  expect(facts.body).toBe("This is a simple message not having headers.\nThe whole text should be recognized as body.\n");
  expect(classify(facts, rules()).decision.rule).toBe("no-header");
});

test("the way a body rule was passed: a line of text among the fields, the empty line after them", async () => {
  const raw = "From: boss@partner.example\r\nTo: sales@company.com\r\nSubject: urgent\r\nPlease send the wire transfer today\r\nMIME-Version: 1.0\r\n\r\n";
  const facts = await extractFacts(bytes(raw), ENVELOPE);
  expect(facts.from).toBe("boss@partner.example");
  expect(classify(facts, rules()).decision.rule).toBe("wire");
  // The spool-file path gives the same facts (serve's parse workers read the file).
  const file = join(mkdtempSync(join(tmpdir(), "mailgw-nonfield-")), "m.eml");
  writeFileSync(file, raw);
  expect(await extractFactsFromFile(file, ENVELOPE)).toEqual(facts);
});

test("which lines start no field: Python's and Postfix's rules together", () => {
  const at = (head: string) => {
    const raw = bytes(`${head}\r\n\r\nbody\r\n`);
    const line = splitHeaderBlock(raw).nonFieldLine;
    return line === null ? null : Buffer.from(raw.subarray(line.at)).toString("latin1").split("\r\n")[0];
  };
  expect(at("Subject: a\r\nTo: b@x\r\n folded: not a new field\r\nX-Empty:")).toBeNull();
  expect(at("From x@y Mon Jan  1 00:00:00 2024\r\nSubject: a")).toBeNull(); // mbox line: header to Python
  expect(at("Subject: a\r\nwire transfer\r\nTo: b@x")).toBe("wire transfer");
  expect(at("Subject : a")).toBe("Subject : a"); // obsolete syntax: Python's header ends there
  expect(at("Subject: a\r\n: no name")).toBe(": no name"); // Postfix's does
  expect(at("Subject: a\r\nFrom\r\n : <x@y>")).toBe("From"); // a name alone on its line
});

test("a multipart message whose extra line only adds to the preamble is parsed once", async () => {
  const raw = "Subject: a\r\nContent-Type: multipart/mixed; boundary=b\r\njunk line\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: application/pdf; name=x.pdf\r\n\r\nx\r\n--b--\r\n";
  const facts = await extractFacts(bytes(raw), ENVELOPE);
  expect(facts.attachments).toEqual(["x.pdf"]);
  expect(facts.body).toBe("hello\n");
  expect(facts.parseError).toBeUndefined();
});
