/**
 * serve parses only the header section of a spilled message (over 64 KB) when no rule reads the
 * body (pipeline/message-classifier.ts; the starter rules read only the subject), and `mailgw
 * test` parses the whole message: both must decode the header the same way. A raw Shift_JIS
 * subject in a multipart message without a top-level charset is read in its first text part's
 * charset (header-text.ts), which is in the body: serve decoded windows-1252 mojibake where the
 * dry run showed 見積, so a `subject contains 見積` rule matched in `mailgw test` and not in serve
 * (found by fuzzing serve's parse paths against the dry run's). serve now reads the body's start
 * for such a header; past HEADER_SECTION_BYTES (a header block over 1 MB) no parse looks.
 */
import { afterEach, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { runDryRun } from "../../src/cli/test.ts";
import { makeHarness, type Harness } from "../pipeline/helpers.ts";
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

/**
 * A multipart message with a raw Shift_JIS subject, `padKb` KB of X-Pad fields, `preamble` bytes
 * before its text part (charset=shift_jis), and an attachment of `attachmentKb` KB after it.
 */
function message(padKb: number, preamble: number, attachmentKb = 0): Buffer {
  const pads: Buffer[] = [];
  for (let left = padKb * 1024; left > 0; left -= 60_000) pads.push(Buffer.from(`X-Pad: ${"a".repeat(Math.min(60_000, left))}\r\n`));
  return Buffer.concat([
    Buffer.from("Received: from client.example ([192.0.2.1])\r\n\tby mx.test (mailgw) with ESMTP\r\n\tid 01m4z7fjx44hhabeprt5ekyv55 for <b@company.com>;\r\n\tThu, 1 Jan 1970 00:00:00 +0000\r\n"),
    Buffer.from("From: a@sender.example\r\nTo: b@company.com\r\nSubject: "), SJIS_QUOTE, Buffer.from("\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n"),
    ...pads,
    Buffer.from(`\r\n${"x".repeat(preamble)}\r\n--b\r\nContent-Type: text/plain; charset=shift_jis\r\n\r\nhello\r\n`),
    Buffer.from(`--b\r\nContent-Type: application/pdf; name="q.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n${"QUJD".repeat(attachmentKb * 256).replace(/.{76}/g, "$&\r\n")}\r\n--b--\r\n`),
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

let h: Harness | null = null;
afterEach(async () => {
  await h?.close();
  h = null;
});

/** `mailgw test --json` in-process, its stdout parsed. */
async function dryRun(file: string, rulesPath: string) {
  let out = "";
  const write = process.stdout.write;
  process.stdout.write = ((chunk: string) => ((out += chunk), true)) as typeof process.stdout.write;
  try {
    const flags = { from: "a@sender.example", to: ["b@company.com"], clientIp: "192.0.2.1", helo: "mx.example.org", tls: false };
    expect(await runDryRun(file, flags, { rulesPath, json: true })).toBe(0);
  } finally {
    process.stdout.write = write;
  }
  return JSON.parse(out);
}

for (const [name, padKb, attachmentKb] of [["a 2 KB header and a 100 KB attachment", 1, 100], ["a header block over 1 MB", 1200, 0]] as const) {
  test(`serve (a spilled message, header-only rules) decides as mailgw test: ${name}`, async () => {
    h = await makeHarness({ rulesYaml: RULES });
    // The client's bytes (serve adds its Received line; so does the dry run).
    const raw = message(padKb, 0, attachmentKb).subarray(message(0, 0).indexOf("From: "));
    expect(raw.byteLength).toBeGreaterThan(64 * 1024); // spilled to its spool file
    const served = await h.pipeline.receive(raw, ENVELOPE);
    const file = join(h.dir, "m.eml");
    writeFileSync(file, raw);
    const dry = await dryRun(file, join(h.dir, "rules.yaml"));
    expect(served.decision.rule).toBe(dry.decision.rule);
    expect(dry.decision.rule).toBe(padKb < 1000 ? "quote" : null);
  });
}
