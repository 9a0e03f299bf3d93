/**
 * MessageBytes (src/spool/message-bytes.ts): joining parts gives the exact bytes in one
 * buffer that owns its ArrayBuffer; a header-only parse of a prefix of a big message in
 * parts (what the pipeline does) gives the same facts as one of the whole message, also
 * when the header block runs past the header limit, and so does one of just the header section
 * (found across part boundaries, never ending inside the header block); the spool writes parts
 * byte for byte.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { extractFacts } from "../../src/parse/extract.ts";
import { MAX_HEADER_BLOCK_BYTES, MAX_HEADER_FIELD_BYTES } from "../../src/parse/limits.ts";
import { splitHeaderBlock } from "../../src/parse/header-block.ts";
import { headerEndOf, joinParts, prefixOf, type MessageBytes } from "../../src/spool/message-bytes.ts";
import { newMessageId } from "../../src/spool/ids.ts";
import { Spool } from "../../src/spool/spool.ts";
import type { Envelope } from "../../src/types.ts";

const ENVELOPE: Envelope = { mailFrom: "a@example.org", rcptTo: ["b@company.com"], clientIp: "192.0.2.1", helo: "h", tls: false };
const PREFIX = MAX_HEADER_BLOCK_BYTES + 2 * MAX_HEADER_FIELD_BYTES;
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}, 60_000);

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

test("header-only facts of the header section equal those of the whole message, without the body", async () => {
  for (const whole of messages()) {
    const full = await extractFacts(whole, ENVELOPE, { content: false });
    for (const partSize of [65536, 7]) {
      const parts = inParts(whole, partSize);
      const end = headerEndOf(parts, PREFIX);
      const fromSection = await extractFacts(prefixOf(parts, end), ENVELOPE, { content: false });
      expect({ ...fromSection, size: whole.byteLength }).toEqual(full);
    }
  }
  const normal = messages()[0]!;
  expect(headerEndOf(inParts(normal, 65536), PREFIX)).toBe(new TextDecoder().decode(normal.subarray(0, 200)).indexOf("\r\n\r\n") + 4);
}, 30_000);

test("the header section's end is never inside the header block (random CR/LF mixes and parts)", () => {
  let seed = 7;
  const rand = (): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const alphabet = ["\r", "\n", "\r\n", "\n\n", "\r\r\n", "a: b", " c", "X-Y: z"];
  let cutEarly = 0;
  for (let i = 0; i < 2000; i++) {
    let text = "";
    for (let n = Math.floor(rand() * 40); n > 0; n--) text += alphabet[Math.floor(rand() * alphabet.length)];
    const whole = Buffer.from(text, "latin1");
    const limit = rand() < 0.2 ? Math.floor(rand() * whole.length) : whole.length + 10;
    const parts = inParts(whole, 1 + Math.floor(rand() * 5));
    const end = headerEndOf(parts, limit);
    const block = splitHeaderBlock(whole.subarray(0, limit));
    // Never before the header block's end (when the block ends within the limit)...
    if (end < Math.min(block.bodyStart, limit)) cutEarly++;
    // ...so the fields are the same as from everything up to the limit.
    expect(splitHeaderBlock(whole.subarray(0, end)).fields).toEqual(block.fields);
    // And found across part boundaries exactly where it is in the joined bytes.
    const ends = [whole.indexOf("\n\n"), whole.indexOf("\n\r\n")].map((at, k) => (at < 0 ? Infinity : at + 2 + k));
    expect(end).toBe(Math.min(...ends, limit, whole.length));
  }
  expect(cutEarly).toBe(0);
});

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
