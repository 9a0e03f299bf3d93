/**
 * Leaving big attachment contents out of the webhook's parse (src/act/webhook-cut.ts) changes
 * nothing in the payload: text, html and every attachment's filename, type, decoded size,
 * disposition and Content-ID are what postal-mime's parse of the whole message gives, for
 * every corpus message (cut at every clean line, so the small corpus exercises it) and for
 * tricky big ones: base64 with CRLF or LF, in 75 columns, padding inside, a fake "--" line, quoted-printable
 * and 8bit attachments, nested message/rfc822 (inline and as an attachment), a single-part
 * attachment, no MIME at all, text/calendar (whose size postal-mime re-encodes: full parse).
 */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Email } from "postal-mime";
import { normalizeLineEndings } from "../../src/act/normalize-crlf.ts";
import { cutContents, MIN_CUT_BYTES, restoredSizes } from "../../src/act/webhook-cut.ts";
import { MIN_TEXT_CUT_BYTES, restoredTexts } from "../../src/act/webhook-text-cut.ts";
import { buildWebhookPayload, WEBHOOK_PARSE_MAX_DEPTH, WEBHOOK_PARSE_MAX_HEADER_BYTES, WEBHOOK_PARSE_MAX_RFC822_DEPTH } from "../../src/act/webhook-payload.ts";
import { splitHeaderBlock } from "../../src/parse/header-block.ts";
import { decodedSize } from "../../src/parse/line-ends.ts";
import { parseNamingParts, type NamedEmail } from "../../src/parse/part-names.ts";

const CORPUS = "/work/shared/corpus";
const OPTIONS = { maxHeadersSize: WEBHOOK_PARSE_MAX_HEADER_BYTES, maxNestingDepth: WEBHOOK_PARSE_MAX_DEPTH, maxRfc822NestingDepth: WEBHOOK_PARSE_MAX_RFC822_DEPTH };

/** postal-mime's input as the payload builds it: the top-level Content-* fields, a blank line; the top type; the body offset. */
function mimeParts(raw: Uint8Array) {
  const block = splitHeaderBlock(raw);
  const head: Uint8Array[] = [];
  for (const f of block.fields) if (f.name.startsWith("content-")) head.push(Buffer.from(`${f.originalName}:`, "latin1"), f.value, Buffer.from("\r\n"));
  head.push(Buffer.from("\r\n"));
  const ct = block.fields.find((f) => f.name === "content-type");
  const topType = ct ? (/^\s*([^\s;]+)/.exec(Buffer.from(ct.value).toString("latin1"))?.[1] ?? null) : null;
  return { head, topType, topHeader: Buffer.concat(head).toString("latin1"), bodyStart: block.bodyStart };
}

/** What a receiver sees of the content, from a parse and the attachment sizes. */
function content(email: Email, sizes: number[]) {
  return {
    text: email.text ?? null,
    html: email.html ?? null,
    attachments: email.attachments.map((a, i) => ({ filename: a.filename, contentType: a.mimeType, size: sizes[i]!, disposition: a.disposition, contentId: a.contentId ?? null })),
  };
}

/** postal-mime's parse as the payload's parser makes it: every name of a part, each part's line ends counted. */
const parse = (input: Uint8Array) => parseNamingParts(input, OPTIONS, null, null, true);

/** Decoded sizes (parse/line-ends.ts: line breaks as CRLF, not the boundary's); a text part that names a file: its text's. */
const decodedSizes = (email: NamedEmail) => email.attachments.map((a) => (a.inlineText ? a.textSize! : decodedSize((a.content as ArrayBuffer).byteLength, a.lineEnds)));

/** The reference: postal-mime's parse of the whole body, sizes as decoded. */
async function fullParse(raw: Uint8Array) {
  const { head, bodyStart } = mimeParts(raw);
  const email = await parse(Buffer.concat([...head, raw.subarray(bodyStart)]));
  return content(email as Email, decodedSizes(email));
}

/**
 * What the payload lists: the full parse, by the parser that also lists every name of a part and
 * the text parts that name a file (their size: the text's decoded bytes), of the message as the
 * rules read it (bare CRs and LFs as CRLF: webhook-payload.ts).
 */
async function payloadReference(stored: Uint8Array) {
  const raw = normalizeLineEndings(stored);
  const { head, bodyStart } = mimeParts(raw);
  const email = await parse(Buffer.concat([...head, raw.subarray(bodyStart)]));
  const parsed = content(email as Email, decodedSizes(email));
  const names = email.attachments.map((a) => [...new Set([a.filename ?? "", ...(a.names ?? [])])].filter((n) => n !== ""));
  return { ...parsed, attachments: parsed.attachments.map((a, i) => ({ ...a, names: names[i]! })) };
}

/** The cut parse with restored sizes, or null when the cut does not apply or is not accounted for (the payload then parses in full). */
async function cutParse(raw: Uint8Array, minCutBytes = MIN_CUT_BYTES, minTextBytes = MIN_TEXT_CUT_BYTES) {
  const { head, topType, topHeader, bodyStart } = mimeParts(raw);
  const cut = cutContents(raw, bodyStart, raw.byteLength, { type: topType, header: topHeader }, { attachment: minCutBytes, text: minTextBytes });
  if (!cut) return null;
  const email = await parse(Buffer.concat([...head, ...cut.body]));
  // A text part that names a file is sized by its text, which a text run cuts: the payload parses such a message whole.
  if (cut.texts.length > 0 && email.attachments.some((a) => a.inlineText)) return null;
  const sizes = restoredSizes(email.attachments, cut);
  const texts = sizes && restoredTexts(email as Email, raw, cut.textNonce, cut.texts);
  if (!sizes || !texts) return null;
  return { parsed: content({ ...email, ...texts } as Email, email.attachments.map((a, i) => (a.inlineText ? a.textSize! : sizes[i]!))), inputBytes: Buffer.concat(cut.body).byteLength, textRuns: cut.texts.length };
}

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

test("every corpus message: cut at every clean line and every text run, the same text, html and attachments as a full parse", async () => {
  let cut = 0;
  let textCut = 0;
  for (const file of files(CORPUS)) {
    const raw = new Uint8Array(readFileSync(file));
    const result = await cutParse(raw, 1, 1).catch(() => null);
    if (!result) continue;
    cut++;
    if (result.textRuns > 0) textCut++;
    expect({ file, ...result.parsed }).toEqual({ file, ...(await fullParse(raw)) });
  }
  expect(cut).toBeGreaterThan(100);
  expect(textCut).toBeGreaterThan(50);
}, 120_000);

const crlf = (lines: string[]) => `${lines.join("\r\n")}\r\n`;
const bytes = (n: number, seed = 7) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 2654435761 + seed) >>> 24));
const base64Lines = (data: Buffer, width = 76, eol = "\r\n") => `${(data.toString("base64").match(new RegExp(`.{1,${width}}`, "g")) ?? []).join(eol)}${eol}`;
/** A message whose body is given as UTF-8 text (message() writes latin1 strings as UTF-8 too: the same bytes for ASCII). */
const utf8Message = (headers: string[], body: string) => {
  const bytes = Buffer.from(`${crlf(["From: a@sender.example", "To: hook@company.com", "Subject: tricky", "MIME-Version: 1.0", ...headers, ""])}${body}`, "utf8");
  const cutShort = Buffer.from(CUT_SHORT, "utf8");
  const parts: Buffer[] = [];
  let from = 0;
  for (let at = bytes.indexOf(cutShort); at >= 0; at = bytes.indexOf(cutShort, from)) {
    parts.push(bytes.subarray(from, at), Buffer.from([0xe2, 0x82]));
    from = at + cutShort.length;
  }
  parts.push(bytes.subarray(from));
  return new Uint8Array(Buffer.concat(parts));
};
const message = (headers: string[], body: string) => new TextEncoder().encode(`${crlf(["From: a@sender.example", "To: hook@company.com", "Subject: tricky", "MIME-Version: 1.0", ...headers, ""])}${body}`);
const mixed = (...parts: string[]) => `${parts.map((p) => `--b1\r\n${p}`).join("")}--b1--\r\n`;
const part = (headers: string[], body: string) => `${crlf([...headers, ""])}${body}`;
const TEXT = part(["Content-Type: text/plain; charset=utf-8"], "Hello, the files are attached. Grüße\r\n");
const HTML_B64 = part(["Content-Type: text/html; charset=utf-8", "Content-Transfer-Encoding: base64"], base64Lines(Buffer.from(`<p>${"long html ".repeat(30_000)}</p>`)));
const pdf = (data: Buffer, lines = base64Lines(data)) => part(['Content-Type: application/pdf; name="a.pdf"', 'Content-Disposition: attachment; filename="a.pdf"', "Content-Transfer-Encoding: base64"], lines);
const MULTI = ['Content-Type: multipart/mixed; boundary="b1"'];
/** Letters only: clean lines in any encoding. */
const letterLines = (n: number, width = 76) => Array.from({ length: n }, (_, i) => "abcdefghijklmnopqrstuvwxyz".repeat(4).slice(i % 26, (i % 26) + width)).join("\r\n");

/** UTF-8 text lines with what JSON and a decoder must get right: quotes, tabs, a CR inside a line, 4-byte characters, a cut-short sequence. */
const utf8Lines = (n: number) => Array.from({ length: n }, (_, i) => `Zeile ${i}: Grüße "€" \t\u{1F600} a\rb ${i % 7 === 0 ? CUT_SHORT : "ok"} ${"x".repeat(i % 50)}`).join("\r\n");
/** Quoted-printable lines: escaped UTF-8, soft breaks (one between the bytes of "é"), "=" not followed by two hex digits, lowercase hex, a trailing "=" alone. */
const qpLines = (n: number) => Array.from({ length: n }, (_, i) => [
  `Zeile ${i}: Gr=C3=BC=C3=9Fe "=E2=82=AC" =3D x`,
  `soft =C3=\r\n=A9 break, bad =ZZ and =4 and =e2=82=ac ${"y".repeat(i % 60)}=`,
  `joined ${i % 3 === 0 ? "=" : "end"}`,
][i % 3]).join("\r\n");
/** Stands for the first two bytes of "€" (E2 82) without the third: utf8Message writes them so. */
const CUT_SHORT = "\u{10FFFD}";

const TRICKY: { name: string; raw: Uint8Array; cut: boolean }[] = [
  { name: "text + base64 pdf (CRLF, 76 columns)", raw: message(MULTI, mixed(TEXT, pdf(bytes(300_001)))), cut: true },
  { name: "base64 in 75 columns (lines not a multiple of 4)", raw: message(MULTI, mixed(TEXT, pdf(bytes(300_004), base64Lines(bytes(300_004), 75)))), cut: true },
  { name: "base64 with LF only, 72 columns", raw: message(MULTI, mixed(TEXT, pdf(bytes(300_002), base64Lines(bytes(300_002), 72, "\n")))), cut: true },
  {
    name: "base64 padded inside, a line with trailing space, a fake -- line, an odd-length line",
    raw: message(MULTI, mixed(TEXT, pdf(bytes(1), `${base64Lines(bytes(200_000))}QUJD\r\nQQ==\r\n${base64Lines(bytes(100_000, 3)).replace("\r\n", " \r\n")}--b1x not a boundary\r\n${base64Lines(bytes(150_000, 5))}QUJDRA\r\n${base64Lines(bytes(90_000, 9))}`))),
    cut: true,
  },
  {
    // A blank line after 1002 lines of 75: the run left out is the first 1000 (75,000 characters, a multiple of 4), not all 1002 (2 mod 4: half a byte).
    name: "base64 in 75 columns, a blank line after an even number of lines whose characters are 2 mod 4",
    raw: message(MULTI, mixed(TEXT, pdf(bytes(1), (() => {
      const lines = bytes(80_000).toString("base64").match(/.{1,75}/g)!;
      return `${[...lines.slice(0, 1002), "", ...lines.slice(1002)].join("\r\n")}\r\n`;
    })()))),
    cut: true,
  },
  { name: "CR CR LF line ends", raw: message(MULTI, mixed(TEXT, pdf(bytes(1), base64Lines(bytes(200_001), 76, "\r\r\n")))), cut: true },
  { name: "base64 html (not cut) and a pdf", raw: message(['Content-Type: multipart/mixed; boundary="b1"'], mixed(HTML_B64, pdf(bytes(100_003)))), cut: true },
  {
    name: "quoted-printable and 8bit attachments",
    raw: message(MULTI, mixed(TEXT,
      part(['Content-Type: application/octet-stream; name="q.bin"', "Content-Transfer-Encoding: quoted-printable"], `${letterLines(2000)}\r\nsoft=\r\nbreak =3D=C3=A9\r\n${letterLines(1500)}\r\nend=\r\n`),
      part(['Content-Type: application/octet-stream; name="e.bin"', "Content-Transfer-Encoding: 8bit"], `${letterLines(3000, 40)}\r\n\xe9t\xe9\r\n${letterLines(10)}\r\n`))),
    cut: true,
  },
  {
    name: "nested message/rfc822 inline and as an attachment",
    raw: message(MULTI, mixed(TEXT,
      part(["Content-Type: message/rfc822"], crlf(["From: inner@x", "Subject: inner", 'Content-Type: multipart/mixed; boundary="in"', "", "--in", "Content-Type: text/plain", "", "inner text", "--in", 'Content-Type: image/png; name="i.png"', "Content-ID: <img1@x>", "Content-Transfer-Encoding: base64", "", base64Lines(bytes(120_000)), "--in--"])),
      part(["Content-Type: message/rfc822", 'Content-Disposition: attachment; filename="fwd.eml"'], crlf(["From: inner2@x", "Subject: fwd", 'Content-Type: multipart/mixed; boundary="in2"', "", "--in2", 'Content-Type: application/zip; name="z.zip"', "Content-Transfer-Encoding: base64", "", base64Lines(bytes(130_000)), "--in2--"])))),
    cut: true,
  },
  { name: "a single-part attachment", raw: message(['Content-Type: application/pdf; name="only.pdf"', "Content-Transfer-Encoding: base64"], base64Lines(bytes(250_000))), cut: true },
  { name: "no MIME at all (text: cut as a text run)", raw: message([], `${letterLines(5000)}\r\n`), cut: true },
  { name: "big UTF-8 text/plain, single part, 8bit", raw: utf8Message(["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: 8bit"], `${utf8Lines(8000)}\r\n`), cut: true },
  { name: "big UTF-8 text/plain ending without a line break, CR CR LF lines, a BOM and -- lines inside", raw: utf8Message(["Content-Type: text/plain; charset=utf-8"], `\ufeffBOM first\r\n${utf8Lines(5000)}\r\r\n-- \r\n\ufeffBOM again\r\n${utf8Lines(5000)}\r\n--\r\n${utf8Lines(5000)}`), cut: true },
  { name: "big UTF-8 text starting with two BOMs (the decoder drops one, the text keeps the other)", raw: utf8Message(["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"], `\ufeff\ufeffHallo\r\n${utf8Lines(8000)}\r\n`), cut: true },
  {
    name: "mixed: alternative of big text and html, and a pdf",
    raw: utf8Message(MULTI, mixed(
      part(['Content-Type: multipart/alternative; boundary="alt"'], `--alt\r\n${part(["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"], `${utf8Lines(6000)}\r\n`)}--alt\r\n${part(["Content-Type: text/html; charset=utf-8"], `<p>\r\n${utf8Lines(6000).replace(/&/g, "&amp;")}\r\n</p>\r\n`)}--alt--\r\n`),
      pdf(bytes(100_001)))),
    cut: true,
  },
  { name: "big text as a text/plain attachment (its marker is not in text: full parse)", raw: utf8Message(MULTI, mixed(TEXT, part(['Content-Type: text/plain; charset=utf-8; name="log.txt"', 'Content-Disposition: attachment; filename="log.txt"'], `${utf8Lines(8000)}\r\n`))), cut: false },
  {
    name: "a fake utf-8 part header inside a quoted-printable latin-1 part (the marker comes out changed: full parse)",
    raw: utf8Message(MULTI, mixed(part(["Content-Type: text/plain; charset=iso-8859-1", "Content-Transfer-Encoding: quoted-printable"], `caf=E9\r\n--not-a-boundary\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${utf8Lines(8000)}\r\nsoft=\r\nend\r\n`))),
    cut: false,
  },
  { name: "big quoted-printable UTF-8 text, single part: soft breaks (one inside a character), bad and lowercase escapes", raw: utf8Message(["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"], `${qpLines(9000)}\r\n`), cut: true },
  {
    name: "quoted-printable text and html in an alternative, and a pdf",
    raw: utf8Message(MULTI, mixed(
      part(['Content-Type: multipart/alternative; boundary="alt"'], `--alt\r\n${part(["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"], `${qpLines(6000)}\r\n`)}--alt\r\n${part(["Content-Type: text/html; charset=UTF-8", "Content-Transfer-Encoding: Quoted-Printable"], `<p>=\r\n${qpLines(6000)}\r\n</p>\r\n`)}--alt--\r\n`),
      pdf(bytes(100_001)))),
    cut: true,
  },
  {
    // The run ends at the last hard break: "caf=C3=" joins the last line, and "é" is split between them.
    name: "quoted-printable UTF-8 text whose last line break is soft, inside a character (=C3= / =A9)",
    raw: utf8Message(["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"], `${qpLines(9000)}\r\ncaf=C3=\r\n=A9 au lait\r\n`),
    cut: true,
  },
  {
    // After a "--" line ending in a soft break, the next run starts after the next hard break, not inside "ü".
    name: "quoted-printable UTF-8 text with a \"--\" line softly broken inside a character (=C3= / =BC)",
    raw: utf8Message(["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"], `Hallo\r\n${qpLines(300)}\r\n-------- Gr=C3=\r\n=BC=C3=9Fe --------\r\n${qpLines(9000)}\r\n`),
    cut: true,
  },
  { name: "format=flowed (left to postal-mime)", raw: utf8Message(["Content-Type: text/plain; charset=utf-8; format=flowed"], `${utf8Lines(8000).replace(/ok/g, "ok ")}\r\n`), cut: false },
  { name: "text/calendar in base64 (re-encoded by postal-mime)", raw: message(MULTI, mixed(TEXT, part(["Content-Type: application/ics; method=REQUEST", "Content-Transfer-Encoding: base64"], base64Lines(Buffer.from(`BEGIN:VCALENDAR\r\n${"X-A:b\r\n".repeat(20_000)}END:VCALENDAR\r\n`))))), cut: false },
];

for (const { name, raw, cut } of TRICKY) {
  test(`the payload of a tricky message is a full parse's: ${name}`, async () => {
    const full = await fullParse(raw);
    const result = await cutParse(raw);
    expect(result !== null).toBe(cut);
    if (result) {
      expect(result.parsed).toEqual(full);
      expect(result.inputBytes).toBeLessThan(raw.byteLength - MIN_CUT_BYTES + 100); // a run left out, a marker line in
    }
    const payload = await buildWebhookPayload({ id: "m1", receivedAt: 0, rule: null, category: "c", envelope: { mailFrom: "", rcptTo: [], clientIp: "", helo: "", tls: false }, raw }, 0);
    expect({ text: payload.text, html: payload.html, attachments: payload.attachments }).toEqual(await payloadReference(raw));
    // Nothing but the names is added to what postal-mime gives (no named text part here), sizes as decoded.
    expect(payload.attachments.map(({ names: _, ...rest }) => rest)).toEqual((await fullParse(normalizeLineEndings(raw))).attachments);
  }, 30_000);
}

test("a big UTF-8 text part that names a file: listed with the size of its whole text, though the text is cut from the parse", async () => {
  const body = `${utf8Lines(8000)}\r\n`;
  const raw = utf8Message(MULTI, mixed(TEXT, part(['Content-Type: text/plain; charset=utf-8; name="notes.txt"', "Content-Transfer-Encoding: 8bit"], body)));
  // The text cut applies (a run of its text would be left out)...
  const { topType, topHeader, bodyStart } = mimeParts(raw);
  expect(cutContents(raw, bodyStart, raw.byteLength, { type: topType, header: topHeader })?.texts.length).toBeGreaterThan(0);
  const payload = await buildWebhookPayload({ id: "m1", receivedAt: 0, rule: null, category: "c", envelope: { mailFrom: "", rcptTo: [], clientIp: "", helo: "", tls: false }, raw }, 0);
  const reference = await payloadReference(raw);
  expect(payload.attachments.map((a) => [a.filename, a.contentType, a.names])).toEqual([["notes.txt", "text/plain", ["notes.txt"]]]);
  // ...but the listed size is the whole part's, as a full parse gives it, not the marker's.
  expect(reference.attachments[0]!.size).toBeGreaterThan(MIN_TEXT_CUT_BYTES);
  expect({ text: payload.text, html: payload.html, attachments: payload.attachments }).toEqual(reference);
}, 30_000);

test("a small text part that names a file, next to a big attachment left out of the parse: listed with its text's size, not 0", async () => {
  const raw = message(MULTI, mixed(TEXT, part(['Content-Type: text/plain; charset=utf-8; name="notes.txt"'], "first line\r\nsecond line\r\n"), pdf(bytes(300_001))));
  // The attachment cut applies (no text run: the parse of the cut body is the payload's)...
  expect((await cutParse(raw))?.textRuns).toBe(0);
  const payload = await buildWebhookPayload({ id: "m1", receivedAt: 0, rule: null, category: "c", envelope: { mailFrom: "", rcptTo: [], clientIp: "", helo: "", tls: false }, raw }, 0);
  expect(payload.attachments.map((a) => [a.filename, a.contentType, a.size])).toEqual([["notes.txt", "text/plain", "first line\r\nsecond line".length], ["a.pdf", "application/pdf", 300_001]]);
  expect({ text: payload.text, html: payload.html, attachments: payload.attachments }).toEqual(await payloadReference(raw));
}, 30_000);
