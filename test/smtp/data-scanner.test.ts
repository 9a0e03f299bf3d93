/**
 * The indexOf-based DATA scanner (src/smtp/data-scanner.ts) against smtp-server's own byte
 * loop: for random messages made of the bytes that matter (CR, LF, '.', 'a') cut into random
 * chunks, both must emit exactly the same message bytes and the same bytes after the end
 * (the next commands) — same end of DATA, same dot-unstuffing, same smuggling resistance —
 * and the same byte count (what the SIZE limit is decided on: a DATA stream's byteLength and
 * sizeExceeded), also when chunks are not joined to the bytes held back from the previous one.
 */
import { expect, test } from "bun:test";
import { SMTPStream } from "smtp-server/lib/smtp-stream.js";
import { useFastDataScanner } from "../../src/smtp/data-scanner.ts";

interface Outcome {
  message: string;
  commands: string[];
  /** The DATA stream's byteLength and sizeExceeded when it ended (a 40-byte SIZE limit). */
  counted: { byteLength: number; sizeExceeded: boolean } | null;
}

/** Small enough that the random messages fall on both sides of it. */
const SIZE_LIMIT = 40;

function run(parser: SMTPStream, chunks: Buffer[], onPiece?: () => void): Promise<Outcome> {
  return new Promise((resolve) => {
    const commands: string[] = [];
    const parts: Buffer[] = [];
    let counted: Outcome["counted"] = null;
    parser.oncommand = (command: Buffer, callback?: () => void) => {
      commands.push(command.toString("latin1"));
      callback?.();
    };
    const data = parser.startDataMode(SIZE_LIMIT);
    data.on("data", (b: Buffer) => {
      parts.push(b);
      onPiece?.();
    });
    data.on("end", () => {
      counted = { byteLength: data.byteLength, sizeExceeded: data.sizeExceeded };
      parser.continue();
    });
    for (const chunk of chunks) parser.write(chunk);
    parser.end();
    parser.on("finish", () => setTimeout(() => resolve({ message: Buffer.concat(parts).toString("latin1"), commands, counted }), 1));
  });
}

function randomMessage(rand: () => number): Buffer {
  const alphabet = ["\r", "\n", ".", "a", "\r\n", "\r\n.", "\r\n..", "\r\n.\r\n"];
  let text = "";
  const n = Math.floor(rand() * 60);
  for (let i = 0; i < n; i++) text += alphabet[Math.floor(rand() * alphabet.length)];
  return Buffer.from(text + "\r\n.\r\nQUIT\r\n", "latin1");
}

function randomChunks(bytes: Buffer, rand: () => number, maxSize = 8): Buffer[] {
  const chunks: Buffer[] = [];
  let at = 0;
  while (at < bytes.length) {
    const size = 1 + Math.floor(rand() * maxSize);
    chunks.push(bytes.subarray(at, at + size));
    at += size;
  }
  return chunks;
}

function seeded(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
}

test("the fast scanner decides exactly like smtp-server's loop (800 random messages and chunkings)", async () => {
  expect(useFastDataScanner(new SMTPStream())._feedDataStream).not.toBe(SMTPStream.prototype._feedDataStream);
  const rand = seeded(42);
  let ended = 0;
  for (let i = 0; i < 800; i++) {
    const bytes = randomMessage(rand);
    const chunks = rand() < 0.2 ? [bytes] : randomChunks(bytes, rand);
    const expected = await run(new SMTPStream(), chunks);
    const actual = await run(useFastDataScanner(new SMTPStream()), chunks);
    expect(actual).toEqual(expected);
    // Chunks over 8 bytes scanned without joining them to the bytes held back before them.
    const bigger = randomChunks(bytes, rand, 24);
    const unjoined = await run(useFastDataScanner(new SMTPStream(), { joinMaxBytes: 0 }), bigger);
    expect(unjoined).toEqual(await run(new SMTPStream(), bigger));
    if (expected.commands.length > 0) ended++;
  }
  expect(ended).toBeGreaterThan(400);
}, 30_000);

test("a 100 KB message in 64 KB chunks: same bytes, dots unstuffed", async () => {
  const line = "..dot-stuffed line and some text to fill it up\r\n";
  const body = Buffer.from(line.repeat(Math.ceil(100_000 / line.length)) + ".\r\nQUIT\r\n", "latin1");
  const chunks = [body.subarray(0, 65536), body.subarray(65536)];
  const fast = await run(useFastDataScanner(new SMTPStream()), chunks);
  expect(fast).toEqual(await run(new SMTPStream(), chunks));
  // The terminator and escape dots cut at every offset around a chunk boundary.
  for (let cut = body.length - 12; cut < body.length; cut++) {
    const split = [body.subarray(0, cut), body.subarray(cut)];
    expect(await run(useFastDataScanner(new SMTPStream()), split)).toEqual(await run(new SMTPStream(), split));
  }
  for (let cut = 65536 - 60; cut < 65536; cut++) {
    const split = [body.subarray(0, cut), body.subarray(cut)];
    expect(await run(useFastDataScanner(new SMTPStream()), split)).toEqual(await run(new SMTPStream(), split));
  }
  expect(fast.commands).toEqual(["QUIT"]);
  expect(fast.message.startsWith(".dot-stuffed")).toBe(true);
});

/** Each way to cut `bytes` into two or three chunks, with the fast scanner (joined and not) and the library. */
async function expectSameAtEveryCut(bytes: Buffer): Promise<void> {
  for (let a = 1; a < bytes.length; a++) {
    for (let b = a; b < bytes.length; b++) {
      const chunks = a === b ? [bytes.subarray(0, a), bytes.subarray(a)] : [bytes.subarray(0, a), bytes.subarray(a, b), bytes.subarray(b)];
      const expected = await run(new SMTPStream(), chunks);
      expect(await run(useFastDataScanner(new SMTPStream()), chunks)).toEqual(expected);
      expect(await run(useFastDataScanner(new SMTPStream(), { joinMaxBytes: 0 }), chunks)).toEqual(expected);
    }
  }
}

test("escape dots cut between the CRLF and the dot, between the two dots, right after them: same as the library", async () => {
  // Dot-stuffed lines back to back (several escape dots in one chunk), a stuffed lone dot, a
  // stuffed terminator look-alike, bare-LF dots, and the real end with commands after it.
  await expectSameAtEveryCut(Buffer.from("a\r\n..b\r\n...\r\n..\r\n..\r\n\n..\r\n.\r\nQUIT\r\n", "latin1"));
  // A message that starts with escape dots (the start-of-DATA checks).
  await expectSameAtEveryCut(Buffer.from("..\r\n...x\r\n.\r\nNOOP\r\n", "latin1"));
  await expectSameAtEveryCut(Buffer.from("...\r\n\r\n.\r\nNOOP\r\n", "latin1"));
  // A message of nothing but dot lines, the end right after the last escape dot's line.
  await expectSameAtEveryCut(Buffer.from("..\r\n..\r\n...\r\n..\r\n.\r\nQUIT\r\n", "latin1"));
}, 30_000);

test("long random messages dense with escape dots in chunks of up to 600 bytes: same as the library", async () => {
  const rand = seeded(7);
  const alphabet = ["a", "\r\n", "\r\n..", "\r\n...", "\r\n..\r\n", "\n..", "\r\n.", "\r", "."];
  for (let i = 0; i < 150; i++) {
    let text = "";
    const n = 200 + Math.floor(rand() * 2000);
    for (let t = 0; t < n; t++) text += alphabet[Math.floor(rand() * alphabet.length)];
    const bytes = Buffer.from(`${text}\r\n.\r\nQUIT\r\n`, "latin1");
    const chunks = randomChunks(bytes, rand, 1 + Math.floor(rand() * 600));
    const expected = await run(new SMTPStream(), chunks);
    expect(await run(useFastDataScanner(new SMTPStream()), chunks)).toEqual(expected);
    expect(await run(useFastDataScanner(new SMTPStream(), { joinMaxBytes: 0 }), chunks)).toEqual(expected);
  }
}, 30_000);

test("a paused DATA stream holds the socket back while dot-stuffed lines arrive, then gets every byte", async () => {
  const body = Buffer.from("..\r\n".repeat(400_000) + ".\r\nQUIT\r\n", "latin1");
  const chunks = randomChunks(body, seeded(3), 65536);
  const parser = useFastDataScanner(new SMTPStream());
  const commands: string[] = [];
  parser.oncommand = (command: Buffer, callback?: () => void) => {
    commands.push(command.toString("latin1"));
    callback?.();
  };
  const data = parser.startDataMode(0);
  let written = 0;
  for (const chunk of chunks) parser.write(chunk, () => written++);
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  // Nobody reads: the parser stops after about one chunk beyond the stream's buffer.
  expect(data.readableLength).toBeLessThan(3 * 65536);
  expect(written).toBeLessThan(4);
  const parts: Buffer[] = [];
  const ended = new Promise<void>((resolve) => data.on("end", () => resolve()));
  data.on("data", (b: Buffer) => parts.push(b));
  await ended;
  parser.continue();
  await new Promise((r) => setTimeout(r, 10));
  const message = Buffer.concat(parts);
  expect(message.length).toBe(3 * 400_000);
  expect(message.equals(Buffer.from(".\r\n".repeat(400_000), "latin1"))).toBe(true);
  expect(commands).toEqual(["QUIT"]);
  expect(parser.dataBytes).toBe(3 * 400_000);
});

test("a chunk of dot-stuffed lines reaches the DATA stream in one piece, not one per escape dot", async () => {
  // smtp-server wrote each piece between escape dots and went on in a setImmediate: 20 MB of
  // `..` lines cost ~17 times the CPU of 20 MB without the dots.
  const body = Buffer.from("..\r\n".repeat(160_000) + ".\r\nQUIT\r\n", "latin1");
  const chunks = randomChunks(body, seeded(5), 65536);
  let pieces = 0;
  const outcome = await run(useFastDataScanner(new SMTPStream()), chunks, () => pieces++);
  expect(outcome.message).toBe(".\r\n".repeat(160_000));
  // A bridge over the bytes held back from the previous chunk may add one piece per chunk.
  expect(pieces).toBeLessThanOrEqual(2 * chunks.length + 2);
});
