/**
 * The webhook payload's parse stays within its budget (src/act/webhook-payload.ts
 * WEBHOOK_PARSE_MAX_*, parse/leaf-cut.ts budgetEnd): a hostile message's payload is built in well
 * under a second of CPU (the delivery thread builds it, and every forward and post waits
 * meanwhile), partly decoded with `parseError` naming the limit; ordinary mail past the
 * classifier's own caps (a base64 attachment padded on every line, a forward in base64) is
 * decoded whole, as postal-mime decodes it, and so is UTF-8 text of more lines than the budget
 * (the budget counts what postal-mime is handed: such text is cut out of the parse, then put back).
 * Measured before the budget (payload alone): newlines-in-rfc822-20mb 27 s, base64-fake-spans
 * 4.8 s, base64-pads-rfc822 4.1 s, newline-text-parts 3.1 s, boundary-scan-19x20mb 3.0 s, a
 * base64 message/rfc822 part of 12 million bare newlines 5.9 s; since, 0.2-0.55 s each.
 */
import { expect, test } from "bun:test";
import PostalMime from "postal-mime";
import { buildWebhookPayload, WEBHOOK_PARSE_MAX_DASH_LINES, WEBHOOK_PARSE_MAX_LINES, WEBHOOK_PARSE_MAX_PAD_UNITS, type WebhookFields } from "../../src/act/webhook-payload.ts";
import { HOSTILE_CASES } from "../parse/hostile-cases.ts";

/** Generous: guards the seconds-long stalls above, not this machine's speed. */
const MAX_BUILD_MS = 5_000;
const HEAD = "From: a@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n";
const LINES = `more than ${WEBHOOK_PARSE_MAX_LINES} lines to decode`;
const PADS = `more than ${WEBHOOK_PARSE_MAX_PAD_UNITS} padded base64 units`;
const DASHES = `more than ${WEBHOOK_PARSE_MAX_DASH_LINES} lines starting with "--"`;

async function payload(raw: Uint8Array): Promise<{ fields: WebhookFields; ms: number }> {
  const started = performance.now();
  const fields = await buildWebhookPayload({ id: "x", receivedAt: 0, rule: null, category: "c", envelope: { mailFrom: "", rcptTo: [], clientIp: "", helo: "", tls: false }, raw }, Date.now());
  return { fields, ms: performance.now() - started };
}

const mixed = (parts: string) => Buffer.from(`${HEAD}Content-Type: multipart/mixed; boundary=p\r\n\r\n${parts}--p--\r\n`);
const base64Lines = (bytes: Buffer) => bytes.toString("base64").replace(/.{76}/g, "$&\r\n");

const HOSTILE: { name: string; limit: string; build: () => Uint8Array }[] = [
  ...[
    ["newlines-in-rfc822-20mb", LINES],
    ["base64-fake-spans-18mb", PADS],
    // Fake quoted-printable part headers inside the base64 part: not counted, it took 5-7 s.
    ["base64-fake-qp-spans-18mb", PADS],
    ["base64-pads-rfc822-17mb", PADS],
    ["newline-text-parts-20mb", LINES],
    ["boundary-scan-19x20mb", DASHES],
  ].map(([name, limit]) => ({ name: name!, limit: limit!, build: HOSTILE_CASES.find((c) => c.name === name)!.build })),
  {
    // Lines the outer message does not have: postal-mime decodes the part, then parses it.
    name: "a base64 message/rfc822 part of 12 million bare newlines",
    limit: LINES,
    build: () => mixed(`--p\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n${base64Lines(Buffer.from(`Subject: in\r\n\r\n${"\n".repeat(12_000_000)}`))}\r\n`),
  },
  ...[
    ["a second Content-Transfer-Encoding field", "Content-Transfer-Encoding: base64\r\nContent-Transfer-Encoding: quoted-printable"],
    ["a field name with a space before the colon", "Content-Transfer-Encoding : base64\r\nContent-Transfer-Encoding: quoted-printable"],
    ["\"quoted-printable-base64\"", "Content-Transfer-Encoding: quoted-printable-base64"],
  ].map(([what, encoding]) => ({
    // postal-mime decodes by the first field, and by "base64" anywhere in its first token.
    name: `a base64 part of "QQ=" units that looks quoted-printable to a regex: ${what}`,
    limit: PADS,
    build: () => mixed(`--p\r\nContent-Type: application/octet-stream\r\n${encoding}\r\n\r\n${"QQ=QQ=QQ=QQ=QQ=QQ=QQ=QQ=\r\n".repeat(700_000)}`),
  })),
  {
    // A 7bit forward counts its parts' padded units once (the outer walk reads them); its own
    // body must still count, even when a second Content-Transfer-Encoding makes the outer part
    // look quoted-printable to the walk (postal-mime takes the first: 7bit).
    name: "a 7bit message/rfc822 part whose own body is base64 of \"QQ=\" units",
    limit: PADS,
    build: () => mixed(`--p\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nSubject: in\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n${"QQ=QQ=QQ=QQ=QQ=QQ=QQ=QQ=\r\n".repeat(700_000)}\r\n`),
  },
  {
    name: "a quoted-printable message/rfc822 part of 7 million encoded newlines",
    limit: LINES,
    build: () => mixed(`--p\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nSubject: in=0A=0A${`${"=0A".repeat(25)}=\r\n`.repeat(280_000)}\r\n`),
  },
];

for (const hostile of HOSTILE) {
  test(`the payload of a hostile message is built within the budget: ${hostile.name}`, async () => {
    const raw = hostile.build();
    const { fields, ms } = await payload(raw);
    expect(fields.parseError).toContain(hostile.limit);
    expect(fields.size).toBe(raw.byteLength);
    expect(ms).toBeLessThan(MAX_BUILD_MS);
  }, 60_000);
}

test("ordinary mail past the classifier's caps is decoded whole: a base64 attachment padded on every line, a forward in base64", async () => {
  // 150,000 lines each ending in "=" (the classifier hands postal-mime 100,000 such units at most).
  const chunks = Array.from({ length: 150_000 }, (_, i) => Buffer.from(`line ${i} of the export`.padEnd(31, ".")).toString("base64"));
  const forward = `From: b@example.com\r\nSubject: fwd\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${"Grüße aus dem Anhang.\r\n".repeat(50_000)}`;
  const raw = mixed(
    `--p\r\nContent-Type: text/plain\r\n\r\nsee below\r\n` +
      `--p\r\nContent-Type: application/octet-stream; name="export.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n${chunks.join("\r\n")}\r\n` +
      `--p\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n${base64Lines(Buffer.from(forward))}\r\n`,
  );
  const { fields } = await payload(raw);
  const full = await PostalMime.parse(Buffer.from(raw));
  expect(fields.parseError).toBeUndefined();
  expect(fields.text === (full.text ?? null)).toBe(true);
  expect(fields.attachments.map((a) => [a.filename, a.size])).toEqual(full.attachments.map((a) => [a.filename, (a.content as ArrayBuffer).byteLength]));
  expect(fields.attachments[0]!.size).toBe(chunks.reduce((n, c) => n + Buffer.from(c, "base64").byteLength, 0));
}, 30_000);

test("a forward (message/rfc822, 7bit) of an attachment padded on every line is decoded whole: its units count once, not at each level", async () => {
  // 250,000 units: within WEBHOOK_PARSE_MAX_PAD_UNITS, but not if the outer walk and the forward's own both count them.
  const chunks = Array.from({ length: 250_000 }, (_, i) => Buffer.from(`line ${i} of the export`.padEnd(31, ".")).toString("base64"));
  const forward =
    `From: b@example.com\r\nSubject: fwd\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n` +
    `--q\r\nContent-Type: text/plain\r\n\r\nthe export\r\n` +
    `--q\r\nContent-Type: application/octet-stream; name="export.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n${chunks.join("\r\n")}\r\n--q--\r\n`;
  const raw = mixed(`--p\r\nContent-Type: text/plain\r\n\r\nsee below\r\n--p\r\nContent-Type: message/rfc822\r\n\r\n${forward}\r\n`);
  const { fields } = await payload(raw);
  const full = await PostalMime.parse(Buffer.from(raw));
  expect(fields.parseError).toBeUndefined();
  expect(fields.attachments.map((a) => [a.filename, a.size])).toEqual(full.attachments.map((a) => [a.filename, (a.content as ArrayBuffer).byteLength]));
  expect(fields.attachments[0]!.size).toBe(chunks.reduce((n, c) => n + Buffer.from(c, "base64").byteLength, 0));
}, 30_000);

test("UTF-8 text of more lines than the budget is decoded whole (it is cut out of the parse and put back)", async () => {
  const lines = Array.from({ length: WEBHOOK_PARSE_MAX_LINES + 200_000 }, (_, i) => `Zeile ${i} ü`);
  const raw = Buffer.from(`${HEAD}Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n${lines.join("\r\n")}\r\n`);
  const { fields } = await payload(raw);
  expect(fields.parseError).toBeUndefined();
  expect(fields.text === `${lines.join("\n")}\n`).toBe(true);
}, 30_000);
