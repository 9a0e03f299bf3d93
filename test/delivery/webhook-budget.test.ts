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

// The limits at their edges, as numbers (not the exported constants: a changed constant must fail here).
const fields = async (raw: Uint8Array) => (await payload(raw)).fields;

test("exactly 100,000 lines starting with \"--\" are decoded whole; one more is cut there, with the note", async () => {
  const dashes = (n: number) => mixed(`--p\r\nContent-Type: text/plain\r\n\r\n${"--\r\n".repeat(n - 2)}`); // "--p", n - 2 lines of "--", "--p--"
  const whole = await fields(dashes(100_000));
  expect(whole.parseError).toBeUndefined();
  expect(whole.text === "--\n".repeat(99_998)).toBe(true);
  const over = await fields(dashes(100_001));
  expect(over.parseError).toBe('more than 100000 lines starting with "--" to decode, the rest not decoded');
}, 30_000);

test("a text/plain message of 150,000 \"-- \" lines: all text (no MIME parts, so no \"--\" line limit)", async () => {
  const raw = Buffer.from(`${HEAD}Content-Type: text/plain\r\n\r\nhello\r\n${"-- \r\n".repeat(150_000)}bye\r\n`);
  const f = await fields(raw);
  expect(f.parseError).toBeUndefined();
  expect(f.text === `hello\n${"-- \n".repeat(150_000)}bye\n`).toBe(true);
}, 30_000);

test("exactly 400,000 padded base64 units are decoded whole; one more is cut there, with the note", async () => {
  const pads = (n: number) => mixed(`--p\r\nContent-Type: application/octet-stream; name="pads.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n${"QQ==\r\n".repeat(n)}`);
  const whole = await fields(pads(400_000));
  expect(whole.parseError).toBeUndefined();
  expect(whole.attachments.map((a) => [a.filename, a.size])).toEqual([["pads.bin", 400_000]]); // "QQ==" is one byte
  const over = await fields(pads(400_001));
  expect(over.parseError).toBe("more than 400000 padded base64 units (runs of '=') to decode, the rest not decoded");
}, 30_000);

test("a message over the line budget with a big attachment: the full parse after the cut one gets a budget of its own (1,000,000 lines)", async () => {
  const pdf = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 2654435761) >>> 24));
  const raw = Buffer.from(
    `${HEAD}Content-Type: multipart/mixed; boundary=p\r\n\r\n` +
      `--p\r\nContent-Type: application/pdf; name="a.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n${base64Lines(pdf)}\r\n` +
      `--p\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\n${"caf\xe9\r\n".repeat(1_100_000)}--p--\r\n`,
    "latin1",
  );
  const f = await fields(raw);
  expect(f.parseError).toBe("more than 1000000 lines to decode, the rest not decoded");
  expect(f.attachments.map((a) => [a.filename, a.size])).toEqual([["a.pdf", 100_000]]);
  // 1,000,000 lines less the pdf part's 1,759 ("--p", 2 header lines, the blank line, 1,755 of base64) and the text part's 3.
  expect(f.text === "café\n".repeat(998_238)).toBe(true);
}, 30_000);

test("20 nested multiparts are decoded; 21 are not (parseError)", async () => {
  const nested = (n: number) => {
    let body = "Content-Type: text/plain\r\n\r\ninnermost\r\n";
    for (let i = 0; i < n; i++) body = `Content-Type: multipart/mixed; boundary=b${i}\r\n\r\n--b${i}\r\n${body}--b${i}--\r\n`;
    return Buffer.from(`${HEAD}${body}`);
  };
  const twenty = await fields(nested(20));
  expect([twenty.text, twenty.parseError]).toEqual(["innermost\n", undefined]);
  const deeper = await fields(nested(21));
  expect([deeper.text, deeper.parseError]).toEqual([null, "Maximum MIME nesting depth of 20 levels exceeded"]);
});

test("forwarded messages are decoded inline 3 deep (the file inside listed); a fourth level is one message/rfc822 attachment", async () => {
  const forwarded = (levels: number) => {
    let message = `From: x@example.com\r\nSubject: innermost\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b0"\r\n\r\n--b0\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b0\r\nContent-Type: application/octet-stream; name="x.exe"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b0--\r\n`;
    for (let l = 1; l <= levels; l++) message = `From: f${l}@example.com\r\nSubject: fwd ${l}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="m${l}"\r\n\r\n--m${l}\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--m${l}\r\nContent-Type: message/rfc822\r\n\r\n${message}--m${l}--\r\n`;
    return Buffer.from(message);
  };
  const three = await fields(forwarded(3));
  expect(three.attachments.map((a) => [a.contentType, a.filename, a.size])).toEqual([["application/octet-stream", "x.exe", 12]]);
  expect(three.parseError).toBeUndefined();
  const four = await fields(forwarded(4));
  expect(four.attachments.map((a) => [a.contentType, a.filename])).toEqual([["message/rfc822", null]]);
  expect(four.parseError).toBeUndefined();
});

test("header bytes over the whole message up to 1 MiB are decoded (not 1,000,000); past it the parse gives up with its note", async () => {
  const header = (n: number) => mixed(`--p\r\nContent-Type: text/plain\r\nX-Pad: ${"a".repeat(n)}\r\n\r\nbody\r\n`);
  const within = await fields(header(1_040_000));
  expect([within.text, within.parseError]).toEqual(["body\n", undefined]);
  const over = await fields(header(1_050_000));
  expect([over.text, over.parseError]).toEqual([null, "Maximum header size of 1048576 bytes exceeded"]);
});

test("1,000 attachments with ordinary part headers (name, disposition, encoding) are all listed, and the text kept", async () => {
  const parts = Array.from({ length: 1000 }, (_, i) => {
    const name = `file${String(i).padStart(4, "0")}.pdf`;
    return `--p\r\nContent-Type: application/pdf; name="${name}"\r\nContent-Disposition: attachment; filename="${name}"\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD\r\n`;
  });
  const f = await fields(mixed(`--p\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n${parts.join("")}`));
  expect(f.parseError).toBeUndefined();
  expect(f.text).toBe("see attached\n");
  expect(f.attachments).toHaveLength(1000);
  expect(f.attachments[999]).toMatchObject({ filename: "file0999.pdf", contentType: "application/pdf", size: 3 });
});

test("1,001 attachments: the first 1,000 are listed", async () => {
  const raw = mixed(Array.from({ length: 1001 }, (_, i) => `--p\r\nContent-Type: application/octet-stream; name="f${i}.bin"\r\n\r\n${i}\r\n`).join(""));
  const f = await fields(raw);
  expect(f.parseError).toBeUndefined();
  expect(f.attachments).toHaveLength(1000);
  expect([f.attachments[0]!.filename, f.attachments[999]!.filename]).toEqual(["f0.bin", "f999.bin"]);
});

test("parseError gives every note in order, separated by \"; \"", async () => {
  let body = "Content-Type: text/plain\r\n\r\ninnermost\r\n";
  for (let i = 0; i < 21; i++) body = `Content-Type: multipart/mixed; boundary=b${i}\r\n\r\n--b${i}\r\n${body}--b${i}--\r\n`;
  const f = await fields(Buffer.from(`From: a@example.com\r\nSubject: ${"long ".repeat(14_000)}\r\n${body}`));
  expect(f.parseError).toBe("header field longer than 65536 bytes, truncated; Maximum MIME nesting depth of 20 levels exceeded");
});
