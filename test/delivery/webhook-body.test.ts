/**
 * The webhook body written in pieces (src/act/webhook-body.ts) is byte for byte
 * JSON.stringify of the payload with `raw` in base64, in the field order receivers have
 * always had, for every remainder of the message length mod 3, with and without `parseError`,
 * with text that JSON must escape (24 MB of it too); and it goes out with a
 * Content-Length, not chunked.
 */
import { afterEach, expect, test } from "bun:test";
import { createHmac } from "node:crypto";
import { webhookBody, writeBase64, writeJsonString } from "../../src/act/webhook-body.ts";
import { postWebhook } from "../../src/act/webhook.ts";
import { buildWebhookPayload, type WebhookFields, type WebhookMessage } from "../../src/act/webhook-payload.ts";

const ENVELOPE = { mailFrom: "a@sender.example", rcptTo: ["hook@company.com"], clientIp: "192.0.2.1", helo: "client.example", tls: true };
const message = (raw: Uint8Array): WebhookMessage => ({ id: "msg-1", receivedAt: 1_700_000_000_000, rule: "hook", category: "orders", envelope: ENVELOPE, raw });

/** The body as it was built before: the whole payload through JSON.stringify. */
function reference(fields: WebhookFields, raw: Uint8Array): Buffer {
  const { size, parseError, ...before } = fields;
  return Buffer.from(JSON.stringify({ ...before, raw: Buffer.from(raw).toString("base64"), size, ...(parseError === undefined ? {} : { parseError }) }));
}

test("writeBase64 is Buffer's base64, for every length mod 3", () => {
  for (const n of [0, 1, 2, 3, 4, 5, 6, 7, 100, 65_536, 65_537, 300_001]) {
    const bytes = Buffer.from(Array.from({ length: n }, (_, i) => (i * 2654435761) >>> 24));
    const out = Buffer.alloc(4 * Math.ceil(n / 3) + 2, 0x7e);
    const end = writeBase64(bytes, out, 1);
    expect(end).toBe(1 + 4 * Math.ceil(n / 3));
    expect(out.toString("latin1", 1, end)).toBe(bytes.toString("base64"));
    expect([out[0], out[end]]).toEqual([0x7e, 0x7e]); // nothing written outside
  }
});

test("writeJsonString is JSON.stringify as UTF-8: escapes, every control character, 2- to 4-byte characters, lone surrogates, null", () => {
  const controls = Array.from({ length: 32 }, (_, i) => String.fromCharCode(i)).join("");
  const values = [null, "", "plain", `${controls}"\\/\u007f`, "é ß € 中 \u2028\u2029 \u{1F600}\u{10FFFF}", "lone \ud83d here, \ude00 there, at the end \ud83d", "\udc00\ud800", "x".repeat(70_000) + "😀"];
  for (const value of values) {
    const expected = Buffer.from(JSON.stringify(value));
    expect(writeJsonString(value, null, 3)).toBe(3 + expected.byteLength);
    const out = Buffer.alloc(expected.byteLength + 4, 0x7e);
    expect(writeJsonString(value, out, 2)).toBe(2 + expected.byteLength);
    expect(out.subarray(2, 2 + expected.byteLength).equals(expected)).toBe(true);
    expect([out[1], out[2 + expected.byteLength]]).toEqual([0x7e, 0x7e]);
  }
});

test("writeJsonString at the edges of each UTF-8 length: U+007F/U+0080, U+07FF/U+0800, U+D7FF/U+E000, U+FFFF, lone U+DBFF and U+DFFF, the first and last pairs", () => {
  const values = ["\u007f\u0080", "\u07ff\u0800", "\ud7ff\ue000\uffff", "lone \udfff and \udbff", "\ud800\udc00 \udbff\udfff"];
  const expected = [
    "22 7f c2 80 22",
    "22 df bf e0 a0 80 22",
    "22 ed 9f bf ee 80 80 ef bf bf 22",
    `22 ${Buffer.from("lone \\udfff and \\udbff", "latin1").toString("hex").replace(/../g, "$& ").trim()} 22`,
    "22 f0 90 80 80 20 f4 8f bf bf 22",
  ];
  for (const [i, value] of values.entries()) {
    const hex = (b: Buffer) => b.toString("hex").replace(/../g, "$& ").trim();
    expect(hex(Buffer.from(JSON.stringify(value)))).toBe(expected[i]!);
    const out = Buffer.alloc(64, 0x7e);
    const end = writeJsonString(value, out, 1);
    expect(hex(out.subarray(1, end))).toBe(expected[i]!);
    expect(writeJsonString(value, null, 1)).toBe(end);
  }
});

test("24 MB of text that JSON escapes character by character: counted and written exactly (the delivery thread writes it)", () => {
  // Measured, not asserted here: 0.86-1.35 s when each \u00XX escape went through a closure and
  // a new array; 0.15-0.17 s since.
  const text = "\x01\x02\t\n".repeat(6_000_000);
  const out = Buffer.allocUnsafe(writeJsonString(text, null, 0));
  const end = writeJsonString(text, out, 0);
  expect(end).toBe(2 + 6_000_000 * 16);
  expect(out.subarray(0, 23).toString("latin1")).toBe(JSON.stringify(text.slice(0, 5)).slice(0, -1));
  expect(out.subarray(-17).toString("latin1")).toBe(JSON.stringify(text.slice(-4)).slice(1));
});

test("the body is JSON.stringify of the payload, byte for byte", async () => {
  const messages = [
    "Subject: plain\r\n\r\nhello\r\n",
    'From: "Q \\" uote" <q@x>\r\nSubject: =?utf-8?B?4pyTIOWunw==?= "quoted" \\ back\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>line\u2028sep "q" \\ tab\t \u00e9\u4e2d\ud83d\ude00</p>\r\n',
    `Subject: deep\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n${"--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n".repeat(30)}`, // parseError (nesting)
    "no header block at all",
    "",
  ];
  for (const text of messages) {
    for (const pad of ["", "x", "xy"]) {
      const raw = new TextEncoder().encode(text + pad);
      const fields = await buildWebhookPayload(message(raw), 1_700_000_123_000);
      const body = webhookBody(fields, raw);
      expect(body.toString("utf8")).toBe(reference(fields, raw).toString("utf8"));
      expect(body.equals(reference(fields, raw))).toBe(true);
    }
  }
  const deep = await buildWebhookPayload(message(new TextEncoder().encode(messages[2]!)), 0);
  expect(deep.parseError).toContain("nesting");
});

const servers: ReturnType<typeof Bun.serve>[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.stop(true);
}, 60_000);

test("posted with Content-Length (not chunked), signed over the bytes sent", async () => {
  const seen: { length: string | null; encoding: string | null; signature: string | null; body: Buffer }[] = [];
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      seen.push({ length: req.headers.get("content-length"), encoding: req.headers.get("transfer-encoding"), signature: req.headers.get("x-mailgw-signature"), body: Buffer.from(await req.arrayBuffer()) });
      return new Response("ok");
    },
  });
  servers.push(server);
  const raw = new TextEncoder().encode(`Subject: big\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n${"QUJDRA".repeat(200_000)}\r\n`);
  const outcome = await postWebhook({ url: `http://127.0.0.1:${server.port}/in`, message: message(raw), secret: "s3cret", signal: new AbortController().signal, nowMs: 1_700_000_123_000, userAgent: "mailgw/test" });
  expect(outcome.kind).toBe("delivered");
  const [post] = seen;
  expect(post!.encoding).toBeNull();
  expect(Number(post!.length)).toBe(post!.body.byteLength);
  expect(post!.signature).toBe(`sha256=${createHmac("sha256", "s3cret").update(post!.body).digest("hex")}`);
  const fields = await buildWebhookPayload(message(raw), 1_700_000_123_000);
  expect(post!.body.equals(reference(fields, raw))).toBe(true);
});

test("the top-level fields: every To and Cc mailbox over repeated fields, Message-ID, Date as ISO 8601, size of the stored bytes", async () => {
  const raw = new TextEncoder().encode(
    'From: "Alice" <alice@example.org>\r\nTo: a@company.com, "Bo" <b@company.com>\r\nTo: c@company.com\r\nCc: d@company.com\r\n' +
      "Reply-To: e@example.org\r\nMessage-ID: <x1@example.org>\r\nDate: Tue, 1 Jul 2025 12:34:56 +0200\r\nSubject: fields\r\n\r\nbody\r\n",
  );
  const fields = await buildWebhookPayload(message(raw), 1_700_000_123_000);
  expect(fields.to.map((m) => m.address)).toEqual(["a@company.com", "b@company.com", "c@company.com"]);
  expect(fields.to[1]).toEqual({ name: "Bo", address: "b@company.com" });
  expect(fields.cc.map((m) => m.address)).toEqual(["d@company.com"]);
  expect(fields.replyTo.map((m) => m.address)).toEqual(["e@example.org"]);
  expect(fields.from).toEqual({ name: "Alice", address: "alice@example.org" });
  expect(fields.messageId).toBe("<x1@example.org>");
  expect(fields.date).toBe("2025-07-01T10:34:56.000Z");
  expect(fields.size).toBe(raw.byteLength);
  expect([fields.timestamp, fields.receivedAt]).toEqual([1_700_000_123, "2023-11-14T22:13:20.000Z"]);
  // A Date that reads as no date is passed on as written.
  const odd = await buildWebhookPayload(message(new TextEncoder().encode("Date: the day after tomorrow\r\n\r\nx\r\n")), 0);
  expect(odd.date).toBe("the day after tomorrow");
});

test("To: over several fields is listed up to 1000 mailboxes in all, the first ones in field order", async () => {
  const field = (from: number, n: number) => `To: ${Array.from({ length: n }, (_, i) => `r${from + i}@company.com`).join(", ")}\r\n`;
  // 600 + 400 fill the list; the third field adds nothing (not even its first mailbox).
  const raw = new TextEncoder().encode(`${field(0, 600)}${field(600, 400)}${field(1000, 5)}Subject: many\r\n\r\nbody\r\n`);
  const fields = await buildWebhookPayload(message(raw), 0);
  expect(fields.to).toHaveLength(1000);
  expect([fields.to[0]!.address, fields.to[599]!.address, fields.to[600]!.address, fields.to[999]!.address]).toEqual(["r0@company.com", "r599@company.com", "r600@company.com", "r999@company.com"]);
  // A first field of 700 leaves 300 for the second.
  const two = await buildWebhookPayload(message(new TextEncoder().encode(`${field(0, 700)}${field(700, 700)}\r\nx\r\n`)), 0);
  expect(two.to.map((m) => m.address)).toEqual(Array.from({ length: 1000 }, (_, i) => `r${i}@company.com`));
});
