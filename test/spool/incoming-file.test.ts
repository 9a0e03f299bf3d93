/**
 * IncomingFile: a message up to the memory limit stays in memory (nothing on disk until it is
 * installed), a bigger one spills to its `.tmp` as it arrives — whatever the chunking, even one
 * chunk crossing both the memory and the prefix limit — and either way the installed file holds
 * exactly the bytes received and `crc` is their CRC-32. abort() leaves nothing.
 */
import { afterEach, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { newMessageId } from "../../src/spool/ids.ts";
import { IncomingFile, SPILLED_HEADER_MEMORY_MAX_BYTES } from "../../src/spool/incoming-file.ts";
import { Spool } from "../../src/spool/spool.ts";

const MEMORY_LIMIT = 64 * 1024;
const PREFIX_LIMIT = 128 * 1024;
let dir = "";
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

function bytesOf(size: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + (i >> 8)) & 0xff;
  return out;
}

function chunked(whole: Uint8Array, sizes: number[]): Uint8Array[] {
  const parts: Uint8Array[] = [];
  let at = 0;
  for (let i = 0; at < whole.byteLength; i++) {
    const n = sizes[i % sizes.length] ?? 1;
    parts.push(whole.subarray(at, at + n));
    at += n;
  }
  return parts;
}

async function receive(spool: Spool, parts: Uint8Array[]): Promise<IncomingFile> {
  const file = await IncomingFile.create(spool, newMessageId(), Date.now(), PREFIX_LIMIT, MEMORY_LIMIT);
  for (const part of parts) if (!file.write(part)) await file.drained();
  await file.end();
  return file;
}

const CASES: [string, number, number[]][] = [
  ["small, many chunks", 10_000, [1, 7, 300]],
  ["exactly the memory limit", MEMORY_LIMIT, [4096]],
  ["one byte over, crossing in a chunk", MEMORY_LIMIT + 1, [65_000, 100]],
  ["200 KB in 64 KB chunks", 200_000, [65_536]],
  ["200 KB in one chunk (over both limits at once)", 200_000, [200_000]],
];

for (const [name, size, sizes] of CASES) {
  test(`${name}: exact bytes installed, CRC of all of them`, async () => {
    dir = await mkdtemp(join(tmpdir(), "incoming-"));
    const spool = new Spool(dir);
    await spool.ensureDirs();
    const whole = bytesOf(size);
    const file = await receive(spool, chunked(whole, sizes));
    expect(file.size).toBe(size);
    expect(file.crc).toBe(Bun.hash.crc32(whole));
    expect(file.keptInMemory).toBe(size <= MEMORY_LIMIT);
    expect(existsSync(file.path)).toBe(size > MEMORY_LIMIT); // nothing on disk while in memory
    await file.install({ fsync: false });
    expect(new Uint8Array(await readFile(spool.pathOf(file.id)))).toEqual(whole);
  });
}

test("abort leaves nothing, in memory or spilled", async () => {
  dir = await mkdtemp(join(tmpdir(), "incoming-"));
  const spool = new Spool(dir);
  await spool.ensureDirs();
  for (const size of [1000, 300_000]) {
    const file = await receive(spool, chunked(bytesOf(size), [50_000]));
    await file.abort();
  }
  expect((await readdir(spool.dir)).filter((n) => n !== "orphaned")).toEqual([]);
});

test("a spilled message keeps only its header section in memory, whatever the chunking", async () => {
  dir = await mkdtemp(join(tmpdir(), "incoming-"));
  const spool = new Spool(dir);
  await spool.ensureDirs();
  const header = new TextEncoder().encode("Received: from x\r\nSubject: big\r\n\r\n");
  const whole = new Uint8Array(header.byteLength + 100_000);
  whole.set(header);
  whole.set(bytesOf(100_000).map((b) => (b === 0x0a ? 0x41 : b)), header.byteLength);
  for (const sizes of [[65_536], [7], [header.byteLength - 1, 70_000], [100_000 + header.byteLength]]) {
    const file = await receive(spool, chunked(whole, sizes));
    expect(file.keptInMemory).toBe(false);
    expect(new TextDecoder().decode(file.headerSection(PREFIX_LIMIT))).toBe("Received: from x\r\nSubject: big\r\n\r\n");
    expect(file.whollyInMemory).toBe(false);
    expect(file.bytes()).toBeNull();
    await file.install({ fsync: false });
    expect(new Uint8Array(await readFile(spool.pathOf(file.id)))).toEqual(whole);
  }
  // No blank line: everything up to the prefix limit stays, as before (and the message is whole in memory).
  const noBlank = bytesOf(100_000).map((b) => (b === 0x0a ? 0x41 : b));
  const file = await receive(spool, chunked(noBlank, [30_000]));
  expect(file.whollyInMemory).toBe(true);
  expect(file.bytes()).toEqual(noBlank);
  await file.abort();
});

test("a spilled message's long header section is not held while it arrives: read back from the file at the end", async () => {
  dir = await mkdtemp(join(tmpdir(), "incoming-"));
  const spool = new Spool(dir);
  await spool.ensureDirs();
  const prefixLimit = 1024 * 1024 + 128 * 1024;
  const line = `X-Pad: ${"a".repeat(990)}\r\n`;
  const encode = (text: string): Uint8Array<ArrayBuffer> => new TextEncoder().encode(text);
  // 1 MB of header fields, the Subject last; then one whose header section passes the prefix limit.
  const cases = [
    { header: `Received: from x\r\n${line.repeat(1000)}Subject: last\r\n\r\n`, body: "b".repeat(50_000) },
    { header: `Received: from x\r\n${line.repeat(1300)}\r\n`, body: "b" },
  ];
  for (const { header, body } of cases) {
    const whole = encode(header + body);
    const file = await IncomingFile.create(spool, newMessageId(), Date.now(), prefixLimit, MEMORY_LIMIT);
    let mostHeld = 0;
    for (const part of chunked(whole, [16_384])) {
      if (!file.write(part)) await file.drained();
      mostHeld = Math.max(mostHeld, file.prefixHeldBytes);
    }
    // Before: the whole header section (up to the prefix limit) stayed in memory through DATA.
    expect(mostHeld).toBeLessThanOrEqual(SPILLED_HEADER_MEMORY_MAX_BYTES + 16_384);
    await file.end();
    const expected = encode(header).subarray(0, prefixLimit);
    expect(file.headerSection(prefixLimit)).toEqual(expected);
    expect(file.headerSection(100)).toEqual(expected.subarray(0, 100));
    expect(file.whollyInMemory).toBe(false);
    await file.install({ fsync: false });
    expect(new Uint8Array(await readFile(spool.pathOf(file.id)))).toEqual(new Uint8Array(whole));
  }
});
