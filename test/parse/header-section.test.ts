/**
 * serve parses only the first HEADER_PREFIX_BYTES of a spilled message (over 64 KB) when no rule
 * reads the body (pipeline/message-classifier.ts; the starter rules read only the subject), and
 * `mailgw test` parses the whole message: both must decode the header the same way. A raw
 * Shift_JIS subject in a multipart message without a top-level charset is read in its first text
 * part's charset (header-text.ts); when that part header lay past the section (a header block over
 * 1 MB, or one ending near it), the dry run decoded 見積 and serve windows-1252 mojibake, so a
 * `subject contains 見積` rule matched in `mailgw test` and not in serve (found by fuzzing).
 */
import { expect, test } from "bun:test";
import { extractFacts } from "../../src/parse/extract.ts";
import { HEADER_PREFIX_BYTES } from "../../src/pipeline/message-classifier.ts";
import { classify } from "../../src/rules/classify.ts";
import { parseRules } from "../../src/rules/load.ts";
import type { Envelope } from "../../src/types.ts";

const ENVELOPE: Envelope = { mailFrom: "a@sender.example", rcptTo: ["b@company.com"], clientIp: "192.0.2.1", helo: "mx.example.org", tls: false };
const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: quote, priority: 10, action: forward, forward_to: sales@elsewhere.example, conditions: [{ field: subject, operator: contains, value: 見積 }] }
`;
const SJIS_QUOTE = Buffer.from([0x8c, 0xa9, 0x90, 0xcf]); // 見積

/** A multipart message with a raw Shift_JIS subject, `padKb` KB of X-Pad fields, `preamble` bytes before its text part (charset=shift_jis). */
function message(padKb: number, preamble: number): Buffer {
  const pads: Buffer[] = [];
  for (let left = padKb * 1024; left > 0; left -= 60_000) pads.push(Buffer.from(`X-Pad: ${"a".repeat(Math.min(60_000, left))}\r\n`));
  return Buffer.concat([
    Buffer.from("Received: from client.example ([192.0.2.1])\r\n\tby mx.test (mailgw) with ESMTP\r\n\tid 01m4z7fjx44hhabeprt5ekyv55 for <b@company.com>;\r\n\tThu, 1 Jan 1970 00:00:00 +0000\r\n"),
    Buffer.from("From: a@sender.example\r\nTo: b@company.com\r\nSubject: "), SJIS_QUOTE, Buffer.from("\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n"),
    ...pads,
    Buffer.from(`\r\n${"x".repeat(preamble)}\r\n--b\r\nContent-Type: text/plain; charset=shift_jis\r\n\r\nhello\r\n--b--\r\n`),
  ]);
}

const loaded = parseRules(RULES, "rules.yaml");
if (!loaded.ok) throw new Error("rules");

for (const [name, padKb, preamble] of [
  ["a header block over 1 MB", 1200, 0],
  ["a header block ending just before the section's end, the text part past it", 1100, 60_000],
  ["a 900 KB header block, the text part inside the section", 900, 0],
] as const) {
  test(`header-only parse of the section decides as a whole parse: ${name}`, async () => {
    const raw = message(padKb, preamble);
    expect(raw.byteLength).toBeGreaterThan(64 * 1024);
    const whole = await extractFacts(raw, ENVELOPE);
    const section = await extractFacts(raw.subarray(0, HEADER_PREFIX_BYTES), ENVELOPE, { content: false });
    expect(section.subject).toBe(whole.subject);
    expect(classify(section, loaded.rules).decision.rule).toBe(classify(whole, loaded.rules).decision.rule);
  });
}

test("the first text part's charset still decodes a raw subject of an ordinary multipart message", async () => {
  const facts = await extractFacts(message(1, 0), ENVELOPE);
  expect(facts.subject).toBe("見積");
  expect(classify(facts, loaded.rules).decision.rule).toBe("quote");
});
