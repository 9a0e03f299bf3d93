/**
 * Runs of encoded words in a part's file name or description, or in a nested message's Subject
 * or From: postal-mime's decodeWords takes time quadratic in such a value (0.6-1.4 s of the
 * delivery thread for one webhook post of a message under 1 MB), so part-names.ts decodes long
 * ones itself and cuts a nested message's fields as the top-level header is cut. The bound is
 * CPU time (test/helpers/cpu-time.ts), generous: it catches the quadratic, not a slow machine.
 */
import { expect, test } from "bun:test";
import { buildWebhookPayload } from "../../src/act/webhook-payload.ts";
import { cpuMsSince } from "../helpers/cpu-time.ts";

const envelope = { mailFrom: "a@b.example", rcptTo: ["b@company.com"], clientIp: "127.0.0.1", helo: "x", tls: false };
const WORD = "=?utf-8?B?7JWI64WV?="; // 안녕
const COUNT = Math.floor((960 * 1024) / (WORD.length + 1));
const words = Array(COUNT).fill(WORD).join(" ");
const hello = "안녕".repeat(COUNT);

const nested = (inner: string) =>
  `From: a@b.example\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary="r0"\r\n\r\n--r0\r\nContent-Type: message/rfc822\r\n\r\n${inner}\r\n--r0--\r\n`;
const part = (head: string) => `From: a@b.example\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary="r0"\r\n\r\n--r0\r\n${head}\r\n\r\nx\r\n--r0--\r\n`;

async function payload(text: string) {
  const before = process.cpuUsage();
  const p = await buildWebhookPayload({ id: "x", receivedAt: 0, rule: null, category: "c", envelope, raw: Buffer.from(text) }, 0);
  return { p, ms: cpuMsSince(before) };
}

test("a part's 960 KB file name or description of encoded words: decoded whole, in linear time", async () => {
  const named = await payload(part(`Content-Type: application/pdf; name="${words}.pdf"`));
  expect(named.p.attachments.map((a) => a.filename)).toEqual([`${hello}.pdf`]);
  expect(named.ms).toBeLessThan(800);
  const described = await payload(part(`Content-Type: application/pdf\r\nContent-Description: ${words}`));
  expect(described.p.attachments.length).toBe(1);
  expect(described.ms).toBeLessThan(800);
});

test("a nested message's 960 KB Subject, From name or file name of encoded words: cut as a top-level field is, in linear time", async () => {
  for (const inner of [
    `From: x@y.example\r\nSubject: ${words}\r\n\r\nhello\r\n`,
    `From: ${words} <x@y.example>\r\nSubject: s\r\n\r\nhello\r\n`,
    `Content-Type: application/pdf; name="${words}"\r\n\r\nx\r\n`,
  ]) {
    const { p, ms } = await payload(nested(inner));
    expect(p.attachments.length + (p.text?.length ?? 0)).toBeGreaterThan(0);
    expect(ms).toBeLessThan(800);
  }
});

test("an ordinary file name is decoded as before", async () => {
  const { p } = await payload(part(`Content-Type: application/pdf; name="=?utf-8?B?6rKs7KCB7IScLnBkZg==?="\r\nContent-Description: =?utf-8?Q?caf=C3=A9?=`));
  expect(p.attachments.map((a) => a.filename)).toEqual(["견적서.pdf"]);
});
