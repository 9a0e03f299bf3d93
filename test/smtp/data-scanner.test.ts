/**
 * The indexOf-based DATA scanner (src/smtp/data-scanner.ts) against smtp-server's own byte
 * loop: for random messages made of the bytes that matter (CR, LF, '.', 'a') cut into random
 * chunks, both must emit exactly the same message bytes and the same bytes after the end
 * (the next commands) — same end of DATA, same dot-unstuffing, same smuggling resistance —
 * also when chunks are not joined to the bytes held back from the previous one.
 */
import { expect, test } from "bun:test";
import { SMTPStream } from "smtp-server/lib/smtp-stream.js";
import { useFastDataScanner } from "../../src/smtp/data-scanner.ts";

interface Outcome {
  message: string;
  commands: string[];
}

function run(parser: SMTPStream, chunks: Buffer[]): Promise<Outcome> {
  return new Promise((resolve) => {
    const commands: string[] = [];
    const parts: Buffer[] = [];
    parser.oncommand = (command: Buffer, callback?: () => void) => {
      commands.push(command.toString("latin1"));
      callback?.();
    };
    const data = parser.startDataMode(0);
    data.on("data", (b: Buffer) => parts.push(b));
    data.on("end", () => parser.continue());
    for (const chunk of chunks) parser.write(chunk);
    parser.end();
    parser.on("finish", () => setTimeout(() => resolve({ message: Buffer.concat(parts).toString("latin1"), commands }), 1));
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
