/**
 * Two webhook behaviours of this session through the real `mailgw serve` (from source) and real
 * HTTP receivers on loopback:
 * - big UTF-8 text, 8-bit and quoted-printable (cut out of the parse and put back:
 *   src/act/webhook-text-cut.ts), reaches the receiver exactly as postal-mime decodes the whole
 *   message, as does a big text attachment (which falls back to the full parse);
 * - a receiver that never answers holds its URL's slots and keeps a backlog of due posts; posts
 *   to another URL are delivered meanwhile (the claim reads each free URL's rows on their own).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import PostalMime from "postal-mime";
import type { WebhookPayload } from "../../src/act/webhook-payload.ts";
import { sendMessage } from "../helpers/webhook-messages.ts";
import { serveDir, startServe, until, type ServeProcess } from "../smtp/serve-process.ts";

const posts: WebhookPayload[] = [];
let receiver: ReturnType<typeof Bun.serve>;
let hanging: ReturnType<typeof Bun.serve>;
let hangingRequests = 0;
let serve: ServeProcess;
let dir = "";

beforeAll(async () => {
  receiver = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    maxRequestBodySize: 1 << 28,
    async fetch(req) {
      posts.push((await req.json()) as WebhookPayload);
      return new Response("ok");
    },
  });
  hanging = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    idleTimeout: 0,
    fetch: () => {
      hangingRequests++;
      return new Promise<Response>(() => undefined);
    },
  });
  dir = serveDir();
  await writeFile(
    join(dir, "rules.yaml"),
    `domains: [company.com]
default: { action: drop, category: default }
rules:
  - { name: hook, action: webhook, url: "http://127.0.0.1:${receiver.port}/in", conditions: [{ field: rcpt, operator: equals, value: hook@company.com }] }
  - { name: hang, action: webhook, url: "http://127.0.0.1:${hanging.port}/in", conditions: [{ field: rcpt, operator: equals, value: hang@company.com }] }
`,
  );
  serve = await startServe("source", dir, {});
}, 30_000);

afterAll(async () => {
  // The hanging receiver goes first: its posts then end at once and serve stops without a wait.
  hanging?.stop(true);
  await serve?.stop();
  receiver?.stop(true);
  if (dir) await rm(dir, { recursive: true, force: true });
}, 30_000);

const crlf = (lines: string[]) => `${lines.join("\r\n")}\r\n`;
/** The octets of the 8-bit part named `filename`: from its header's blank line to the CRLF before the next boundary. */
const partBodyBytes = (message: Buffer, filename: string): number => {
  const raw = message.toString("latin1");
  const start = raw.indexOf("\r\n\r\n", raw.indexOf(`filename="${filename}"`)) + 4;
  return raw.indexOf("\r\n--m", start) - start;
};
/** ~1 MB of UTF-8 lines: accents, "€", an emoji, quotes, tabs, a "-- " signature line. */
const textLines = (n: number) => Array.from({ length: n }, (_, i) => (i === n / 2 ? "-- " : `Zeile ${i}: Grüße "€" \t😀 ${"x".repeat(i % 40)}`));
/** The same lines in quoted-printable, with a soft break in the middle of some of them. */
const qp = (line: string, i: number) => {
  const escaped = [...Buffer.from(line)].map((b) => (b > 127 || b === 0x3d ? `=${b.toString(16).toUpperCase().padStart(2, "0")}` : String.fromCharCode(b))).join("");
  return i % 5 === 0 && escaped.length > 20 ? `${escaped.slice(0, 12)}=\r\n${escaped.slice(12)}` : escaped;
};

const MESSAGES: { name: string; bytes: Buffer }[] = [
  {
    name: "8-bit UTF-8 text, single part",
    bytes: Buffer.from(crlf(["From: a@sender.example", "To: hook@company.com", "Subject: 8bit", "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit", "", ...textLines(20_000)]), "utf8"),
  },
  {
    name: "quoted-printable UTF-8 text and html in an alternative",
    bytes: Buffer.from(crlf([
      "From: a@sender.example", "To: hook@company.com", "Subject: qp", "MIME-Version: 1.0", 'Content-Type: multipart/alternative; boundary="alt"', "",
      "--alt", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable", "", ...textLines(12_000).map(qp),
      "--alt", "Content-Type: text/html; charset=utf-8", "Content-Transfer-Encoding: quoted-printable", "", "<div>", ...textLines(12_000).map((l, i) => qp(`<p>${l}</p>`, i)), "</div>",
      "--alt--",
    ]), "utf8"),
  },
  {
    name: "a big text attachment (the full parse)",
    bytes: Buffer.from(crlf([
      "From: a@sender.example", "To: hook@company.com", "Subject: log", "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="m"', "",
      "--m", "Content-Type: text/plain; charset=utf-8", "", "The log is attached.",
      "--m", 'Content-Type: text/plain; charset=utf-8; name="log.txt"', 'Content-Disposition: attachment; filename="log.txt"', "", ...textLines(20_000),
      "--m--",
    ]), "utf8"),
  },
];

for (const { name, bytes } of MESSAGES) {
  test(`big text reaches the receiver as postal-mime decodes the whole message: ${name}`, async () => {
    const id = await sendMessage(serve.smtpPort, "hook@company.com", { name, mailFrom: "a@sender.example", bytes, expected: {} });
    await until(`the post of ${name}`, async () => posts.some((p) => p.id === id), 20_000);
    const post = posts.find((p) => p.id === id)!;
    const full = await PostalMime.parse(bytes);
    expect(post.parseError).toBeUndefined();
    expect(post.text === (full.text ?? null)).toBe(true);
    expect(post.html === (full.html ?? null)).toBe(true);
    // Sizes as decoded (line breaks as CRLF, not the one before the boundary: line-ends.ts), not postal-mime's "\n" per line.
    expect(post.attachments.map((a) => [a.filename, a.size])).toEqual(full.attachments.map((a) => [a.filename, partBodyBytes(bytes, a.filename ?? "")]));
  }, 30_000);
}

test("a receiver that never answers keeps a backlog; another URL's posts are delivered meanwhile", async () => {
  for (let i = 0; i < 40; i++) await sendMessage(serve.smtpPort, "hang@company.com", { name: `hang ${i}`, mailFrom: "a@sender.example", bytes: Buffer.from(`Subject: hang ${i}\r\n\r\nwaits\r\n`), expected: {} });
  await until("the hanging receiver's slots taken", async () => hangingRequests > 0, 10_000);
  await Bun.sleep(300);
  const held = hangingRequests;
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push(await sendMessage(serve.smtpPort, "hook@company.com", { name: `ok ${i}`, mailFrom: "a@sender.example", bytes: Buffer.from(`Subject: ok ${i}\r\n\r\nfine\r\n`), expected: {} }));
  await until("the other URL's posts", async () => ids.every((id) => posts.some((p) => p.id === id)), 10_000);
  // The hanging URL got no more than its slots: its backlog waits for them.
  expect(hangingRequests).toBe(held);
  expect(held).toBeLessThan(40);
}, 30_000);
