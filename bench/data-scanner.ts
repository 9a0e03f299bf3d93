/**
 * The DATA scanner alone (src/smtp/data-scanner.ts on smtp-server's SMTPStream, no sockets):
 * µs per message for plain 4 KB and 100 KB messages (the hot path), a 100 KB message whose
 * every line is dot-stuffed, and a 20 MB one of `..` lines, fed in 64 KB chunks as a socket
 * delivers them; smtp-server's own loop beside it for reference.
 * Usage: bun bench/data-scanner.ts [--module PATH] [--ms 1500]
 *   --module  another copy of data-scanner.ts (e.g. an older one from `git show`), for A/B
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { SMTPStream } from "smtp-server/lib/smtp-stream.js";

const { values } = parseArgs({ options: { module: { type: "string" }, ms: { type: "string", default: "1500" } } });
const modulePath = values.module ? resolve(values.module) : "../src/smtp/data-scanner.ts";
const { useFastDataScanner } = (await import(modulePath)) as typeof import("../src/smtp/data-scanner.ts");
const CHUNK = 65536;

function message(bytes: number, line: string): Buffer {
  return Buffer.from(line.repeat(Math.ceil(bytes / line.length)) + ".\r\n", "latin1");
}

/** Feeds one message through a fresh parser in DATA mode; resolves when DATA has ended. */
function receive(parser: SMTPStream, bytes: Buffer): Promise<void> {
  return new Promise((done) => {
    parser.oncommand = (_command: Buffer, callback?: () => void) => callback?.();
    const data = parser.startDataMode(0);
    data.on("data", () => {});
    data.on("end", () => {
      parser.continue();
      done();
    });
    for (let at = 0; at < bytes.length; at += CHUNK) parser.write(bytes.subarray(at, at + CHUNK));
  });
}

async function time(make: () => SMTPStream, bytes: Buffer, budgetMs: number): Promise<number> {
  await receive(make(), bytes); // warm-up
  let n = 0;
  const started = performance.now();
  while (performance.now() - started < budgetMs) {
    await receive(make(), bytes);
    n++;
  }
  return ((performance.now() - started) * 1000) / n;
}

const plainLine = "The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuv\r\n";
const cases: [string, Buffer][] = [
  ["4 KB plain", message(4096, plainLine)],
  ["100 KB plain", message(100 * 1024, plainLine)],
  ["100 KB, every line ..", message(100 * 1024, `..${plainLine}`)],
  ["20 MB of ..CRLF", message(20 * 1024 * 1024, "..\r\n")],
];
const budget = Number(values.ms);
console.log(`| message | ${values.module ?? "src/smtp/data-scanner.ts"} µs | smtp-server's loop µs |`);
console.log("|---|---:|---:|");
for (const [name, bytes] of cases) {
  const fast = await time(() => useFastDataScanner(new SMTPStream()), bytes, budget);
  const library = await time(() => new SMTPStream(), bytes, name.startsWith("20 MB") ? 1 : budget);
  console.log(`| ${name} | ${fast.toFixed(1)} | ${library.toFixed(1)} |`);
}
