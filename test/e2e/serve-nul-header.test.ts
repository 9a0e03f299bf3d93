/**
 * A NUL in a header field reads two ways: Python's email package keeps it and what follows
 * (`Urgent wire\0x`), while Thunderbird's message list and a Postfix relay end the value at it
 * (`Urgent wire`). The rules used to see only the first: `subject equals "Urgent wire"` missed,
 * and `From: ceo@company.com<NUL><boss@evil.example>`, shown as from ceo@company.com where the
 * value is cut, was only from boss@evil.example. Now the facts hold both readings (subject,
 * header:*, from, from_name, to, cc; attachment names already did). Checked with `mailgw test`
 * (a subprocess, as an admin runs it) and over SMTP against the real `mailgw serve`.
 */
import { describe, expect, test } from "bun:test";
import { RawClient, greet, terminated } from "../smtp/helpers.ts";
import { serveEachTest } from "../smtp/serve-process.ts";
import { dryRunner } from "../cli-test/dry-run.ts";

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: wire, priority: 90, action: reject, reject_message: "wire rule", conditions: [{ field: subject, operator: equals, value: "Urgent wire" }] }
  - { name: hidden, priority: 85, action: reject, reject_message: "hidden rule", conditions: [{ field: subject, operator: contains, value: "hidden words" }] }
  - { name: ceo, priority: 80, action: reject, reject_message: "ceo rule", conditions: [{ field: from, operator: equals, value: ceo@company.com }] }
  - { name: ceo-name, priority: 75, action: reject, reject_message: "ceo name rule", conditions: [{ field: from_name, operator: equals, value: "The CEO" }] }
  - { name: payroll, priority: 70, action: reject, reject_message: "payroll rule", conditions: [{ field: to, operator: equals, value: payroll@company.com }] }
  - { name: tag, priority: 65, action: reject, reject_message: "tag rule", conditions: [{ field: "header:X-Tag", operator: equals, value: urgent }] }
  - { name: exe, priority: 60, action: reject, reject_message: "exe rule", conditions: [{ field: attachment, operator: ends_with, value: .exe }] }
`;

const head = (fields: string): string => `${fields}\r\nMIME-Version: 1.0\r\n`;
const plain = (fields: string): string => `${head(fields)}\r\nhello\r\n`;
const FROM = "From: Boss <boss@partner.example>\r\nTo: sales@company.com";

/** Message → the rule that must decide it (null: the default). */
const CASES: [string, string, string | null][] = [
  ["raw NUL in Subject", plain(`${FROM}\r\nSubject: Urgent wire\0x`), "wire"],
  ["encoded NUL in Subject", plain(`${FROM}\r\nSubject: =?utf-8?Q?Urgent_wire=00x?=`), "wire"],
  ["text after the NUL is still read", plain(`${FROM}\r\nSubject: Hello\0 hidden words`), "hidden"],
  ["From cut before a second address", plain("From: ceo@company.com\0<boss@evil.example>\r\nTo: sales@company.com\r\nSubject: s"), "ceo"],
  ["From address cut before a fake domain", plain("From: CEO <ceo@company.com\0.evil.example>\r\nTo: sales@company.com\r\nSubject: s"), "ceo"],
  ["From display name cut", plain('From: "The CEO\0 (external)" <x@evil.example>\r\nTo: sales@company.com\r\nSubject: s'), "ceo-name"],
  ["To address cut", plain("From: a@partner.example\r\nTo: payroll@company.com\0.evil.example\r\nSubject: s"), "payroll"],
  ["any header cut", plain(`${FROM}\r\nSubject: s\r\nX-Tag: urgent\0junk`), "tag"],
  [
    "part file name cut",
    `${head(`${FROM}\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary="b"`)}\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee\r\n` +
      '--b\r\nContent-Type: application/pdf; name="scan.exe\0.pdf"\r\nContent-Disposition: attachment; filename="scan.exe\0.pdf"\r\n\r\nJVBERi0=\r\n--b--\r\n',
    "exe",
  ],
  ["no NUL: no match", plain(`${FROM}\r\nSubject: Urgent wire x`), null],
];

describe("mailgw test: a NUL in a header field", () => {
  const dryRun = dryRunner("nul-header-cli-", RULES);
  for (const [name, raw, rule] of CASES) {
    test(`${name} → ${rule ?? "default"}`, async () => {
      const json = await dryRun(name.replaceAll(" ", "-"), raw);
      expect(json.decision.rule ?? null).toBe(rule);
    });
  }
});

describe("mailgw serve: a NUL in a header field", () => {
  const serve = serveEachTest();
  test("each message gets its rule's 550 (or 250 without a NUL); the server stays up", async () => {
    const s = await serve({}, RULES);
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    const replies: Record<string, string> = {};
    for (const [name, raw] of CASES) {
      expect(await c.cmd("MAIL FROM:<a@partner.example>")).toStartWith("250");
      expect(await c.cmd("RCPT TO:<sales@company.com>")).toStartWith("250");
      expect(await c.cmd("DATA")).toStartWith("354");
      c.write(terminated(raw));
      replies[name] = await c.reply();
    }
    const expected = Object.fromEntries(
      CASES.map(([name, , rule]) => [name, rule === null ? expect.stringMatching(/^250 2\.0\.0 Queued as /) : `550 5.7.1 ${rule === "ceo-name" ? "ceo name" : rule} rule`]),
    );
    expect(replies).toEqual(expected);
    expect(await c.cmd("QUIT")).toStartWith("221");
    expect(await s.stop()).toBe(0);
  }, 60_000);
});
