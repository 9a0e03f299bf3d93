/**
 * MessageBytes (src/spool/message-bytes.ts): joining parts gives the exact bytes in one
 * buffer that owns its ArrayBuffer; a header-only parse of a prefix of a big message in
 * parts (what the pipeline does) gives the same facts as one of the whole message, also
 * when the header block runs past the header limit; the spool writes parts byte for byte.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { extractFacts } from "../../src/parse/extract.ts";
import { MAX_HEADER_BLOCK_BYTES, MAX_HEADER_FIELD_BYTES } from "../../src/parse/limits.ts";
import { joinParts, prefixOf, type MessageBytes } from "../../src/spool/message-bytes.ts";
import { newMessageId } from "../../src/spool/ids.ts";
import { Spool } from "../../src/spool/spool.ts";
import type { Envelope } from "../../src/types.ts";

const ENVELOPE: Envelope = { mailFrom: "a@example.org", rcptTo: ["b@company.com"], clientIp: "192.0.2.1", helo: "h", tls: false };
const PREFIX = MAX_HEADER_BLOCK_BYTES + 2 * MAX_HEADER_FIELD_BYTES;
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function inParts(bytes: Uint8Array, partSize: number): MessageBytes {
  const parts: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += partSize) parts.push(bytes.subarray(at, at + partSize));
  return { parts, size: bytes.byteLength };
}

function messages(): Uint8Array[] {
  const body = "x".repeat(3 * 1024 * 1024);
  const normal = `From: A <a@example.org>\r\nTo: b@company.com\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\n${body}`;
  const longHeaders = `From: a@example.org\r\n${"X-Pad: ".concat("p".repeat(200), "\r\n").repeat(6000)}Subject: late\r\nX-Long: ${"y".repeat(300_000)}\r\n\r\n${body}`;
  const noBlankLine = `Subject: s\r\n${"X-H: v\r\n".repeat(400_000)}`;
  return [normal, longHeaders, noBlankLine].map((text) => new TextEncoder().encode(text));
}

test("join and prefix give the exact bytes", () => {
  const bytes = new TextEncoder().encode("abcdefghij".repeat(1000));
  const message = inParts(bytes, 333);
  const joined = joinParts(message);
  expect(Buffer.compare(joined, bytes)).toBe(0);
  expect(joined.byteOffset === 0 && joined.byteLength === joined.buffer.byteLength).toBe(true);
  expect(Buffer.compare(prefixOf(message, 1000), bytes.subarray(0, 1000))).toBe(0);
  expect(prefixOf(message, 10 ** 9).byteLength).toBe(bytes.byteLength);
});

test("header-only facts of a prefix equal those of the whole message", async () => {
  for (const whole of messages()) {
    expect(whole.byteLength).toBeGreaterThan(PREFIX);
    const full = await extractFacts(whole, ENVELOPE, { content: false });
    const fromPrefix = await extractFacts(prefixOf(inParts(whole, 65536), PREFIX), ENVELOPE, { content: false });
    expect({ ...fromPrefix, size: whole.byteLength }).toEqual(full);
  }
}, 30_000);

test("the spool writes a message in parts byte for byte", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mailgw-parts-"));
  dirs.push(dir);
  const spool = new Spool(dir);
  await spool.ensureDirs();
  const bytes = new Uint8Array(5 * 1024 * 1024 + 17).map((_, i) => i % 251);
  const id = newMessageId(Date.now());
  await spool.write({ id, bytes: inParts(bytes, 4096).parts });
  expect(Buffer.compare(readFileSync(spool.pathOf(id)), bytes)).toBe(0);
});
