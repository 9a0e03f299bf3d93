/**
 * What a webhook receiver gets for messages real senders write, through the real `mailgw serve`
 * (from source): the post's `subject`, `from`, `to`, `headers` are the decoded values a rule
 * was matched on (the subject in the database is the classifier's), and text, html and
 * attachments are there even when the top-level header block is too big for postal-mime.
 * - a Korean mailer writing raw EUC-KR header bytes, declared only in Content-Type's charset;
 * - a UTF-8 character split across two encoded words with an RFC 2231 language (`utf-8*sl`);
 * - a To: and Cc: of 1,100 addresses each and a long References: (over postal-mime's 128 KB header
 *   limit), the Subject after them;
 * - a part naming its file twice (filename="invoice.pdf", name="invoice.exe") and text parts that
 *   name a file (text/plain; name="x.exe", text/html inline; filename=…): an `attachment` rule
 *   matched the .exe, and the post listed only invoice.pdf, or no attachment at all, so a
 *   receiver saving the attachments never had the file the rule matched.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { WebhookPayload } from "../../src/act/webhook-payload.ts";
import { RawClient, greet } from "../smtp/helpers.ts";
import { serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";
import { waitFor } from "./helpers.ts";

const posts: WebhookPayload[] = [];
let receiver: ReturnType<typeof Bun.serve>;
let serve: ServeProcess;
let db: Database;

beforeAll(async () => {
  receiver = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      posts.push((await req.json()) as WebhookPayload);
      return new Response("ok");
    },
  });
  const dir = serveDir();
  writeFileSync(
    join(dir, "rules.yaml"),
    `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: hook, priority: 10, action: webhook, url: "http://127.0.0.1:${receiver.port}/in", conditions: [{ field: rcpt, operator: equals, value: hook@company.com }] }
  - name: hook-exe
    priority: 20
    action: webhook
    url: "http://127.0.0.1:${receiver.port}/in"
    conditions: [{ field: rcpt, operator: equals, value: hook@company.com }, { field: attachment, operator: ends_with, value: .exe }]
`,
  );
  serve = await startServe("source", dir, { QUEUE_RETRY_BASE_SECONDS: "0.05" });
  db = new Database(join(dir, "data", "mail-gateway.db"), { readonly: true });
}, 60_000);

afterAll(async () => {
  db?.close();
  await serve?.stop();
  receiver?.stop(true);
}, 60_000);

/** Sends `message` (exact bytes, CRLF lines, dot-stuffed here) to hook@company.com; waits for its post. */
async function post(message: Buffer): Promise<{ payload: WebhookPayload; classifiedSubject: string }> {
  const c = await RawClient.connect(serve.smtpPort);
  let id: string;
  try {
    await greet(c);
    expect(await c.cmd("MAIL FROM:<a@sender.example>")).toStartWith("250");
    expect(await c.cmd("RCPT TO:<hook@company.com>")).toStartWith("250");
    expect(await c.cmd("DATA")).toStartWith("354");
    c.write(Buffer.concat([Buffer.from(message.toString("latin1").replace(/^\./gm, ".."), "latin1"), Buffer.from(".\r\n")]));
    const reply = await c.reply(15_000);
    id = /^250 2\.0\.0 Queued as (\S+)/.exec(reply)?.[1] ?? "";
    expect(reply).toStartWith("250");
  } finally {
    c.end();
  }
  await waitFor(() => posts.some((p) => p.id === id), 15_000, `webhook post of ${id}`);
  const payload = posts.find((p) => p.id === id) as WebhookPayload;
  expect(Buffer.from(payload.raw, "base64").subarray(-message.length).equals(message)).toBe(true);
  const row = db.query<{ subject: string }, [string]>("SELECT subject FROM messages WHERE id = ?").get(id);
  return { payload, classifiedSubject: row?.subject ?? "(no row)" };
}

const crlf = (lines: (string | Buffer)[]) => Buffer.concat(lines.flatMap((l) => [typeof l === "string" ? Buffer.from(l, "utf8") : l, Buffer.from("\r\n")]));
/** 견적 요청 ("quote request") and 김철수 (a name) in EUC-KR. */
const EUCKR_SUBJECT = Buffer.from([0xb0, 0xdf, 0xc0, 0xfb, 0x20, 0xbf, 0xe4, 0xc3, 0xbb]);
const EUCKR_NAME = Buffer.from([0xb1, 0xe8, 0xc3, 0xb6, 0xbc, 0xf6]);

test("raw EUC-KR headers declared by Content-Type: the post has the subject and name the rules saw", async () => {
  const message = crlf([
    Buffer.concat([Buffer.from("From: "), EUCKR_NAME, Buffer.from(" <kim@sender.example>")]),
    "To: hook@company.com",
    Buffer.concat([Buffer.from("Subject: "), EUCKR_SUBJECT]),
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=euc-kr",
    "Content-Transfer-Encoding: 8bit",
    "",
    EUCKR_SUBJECT,
  ]);
  const { payload, classifiedSubject } = await post(message);
  expect(classifiedSubject).toBe("견적 요청");
  expect(payload.subject).toBe("견적 요청");
  expect(payload.from).toEqual({ name: "김철수", address: "kim@sender.example" });
  expect(payload.headers.find((h) => h.name === "Subject")?.value).toBe("견적 요청");
  expect(payload.text).toBe("견적 요청\n");
  expect(payload.parseError).toBeUndefined();
}, 30_000);

test("a UTF-8 character split over two encoded words (charset*language) comes out whole", async () => {
  const message = crlf([
    "From: a@sender.example",
    "To: hook@company.com",
    "Subject: =?iso-8859-2*sl?Q?Doma=e8e?=",
    "  =?utf-8*sl?Q?_omre=C5?=     =?Utf-8*SL?q?=BEje?=",
    "",
    "body",
  ]);
  const { payload, classifiedSubject } = await post(message);
  expect(classifiedSubject).toBe("Domače omrežje");
  expect(payload.subject).toBe("Domače omrežje");
}, 30_000);

test("headers over 128 KB (To:, Cc:, References:): subject, from, text and attachments are still posted", async () => {
  const list = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `"Recipient ${tag}${i}" <recipient.${tag}${i}@lists.example.org>`).join(",\r\n ");
  const message = crlf([
    "From: Newsletter <news@sender.example>",
    `To: ${list(1100, "t")}`,
    `Cc: ${list(1100, "c")}`,
    `References: ${Array.from({ length: 1400 }, (_, i) => `<thread.${i}@sender.example>`).join("\r\n ")}`,
    "Subject: after the big lists",
    "MIME-Version: 1.0",
    'Content-Type: multipart/mixed; boundary="b"',
    "",
    "--b",
    "Content-Type: text/plain; charset=utf-8",
    "",
    "the text",
    "--b",
    'Content-Type: application/pdf; name="a.pdf"',
    "Content-Disposition: attachment; filename=\"a.pdf\"",
    "Content-Transfer-Encoding: base64",
    "",
    "JVBERi0=",
    "--b--",
  ]);
  expect(message.length).toBeGreaterThan(128 * 1024);
  const { payload, classifiedSubject } = await post(message);
  expect(classifiedSubject).toBe("after the big lists");
  expect(payload.subject).toBe("after the big lists");
  expect(payload.from).toEqual({ name: "Newsletter", address: "news@sender.example" });
  expect(payload.to).toHaveLength(1000); // the rules' limit per list (parse/limits.ts)
  expect(payload.to[0]).toEqual({ name: "Recipient t0", address: "recipient.t0@lists.example.org" });
  expect(payload.text).toBe("the text\n");
  expect(payload.attachments.map((a) => [a.filename, a.contentType, a.size])).toEqual([["a.pdf", "application/pdf", 5]]);
  expect(payload.parseError).toBeUndefined();
}, 30_000);

test("every name a part gives, and a text part that names a file, are in the post's attachments as the rules saw them", async () => {
  const twoNames = crlf([
    "From: a@sender.example", "To: hook@company.com", "Subject: two names", "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="b"', "",
    "--b", "Content-Type: text/plain", "", "see attached",
    "--b", 'Content-Type: application/octet-stream; name="invoice.exe"', 'Content-Disposition: attachment; filename="invoice.pdf"', "Content-Transfer-Encoding: base64", "", "TVqQAAMAAAAEAAAA",
    "--b--",
  ]);
  const first = (await post(twoNames)).payload;
  expect(first.rule).toBe("hook-exe");
  expect(first.attachments).toEqual([{ filename: "invoice.pdf", contentType: "application/octet-stream", size: 12, disposition: "attachment", contentId: null, names: ["invoice.pdf", "invoice.exe"] }]);

  const namedText = crlf([
    "From: a@sender.example", "To: hook@company.com", "Subject: named text", "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="b"', "",
    "--b", "Content-Type: text/plain", "", "hello",
    "--b", 'Content-Type: text/plain; name="x.exe"', "Content-ID: <part2@sender.example>", "", "MZ: the named text part",
    "--b", 'Content-Type: text/html; charset=utf-8', 'Content-Disposition: inline; filename="invoice.html"', "", "<p>pay here</p>",
    "--b--",
  ]);
  const second = (await post(namedText)).payload;
  expect(second.rule).toBe("hook-exe");
  // Still body text, as before (and as mail clients show them inline), and listed as files too,
  // sized as decoded (line breaks as CRLF; the last one is the boundary's: parse/line-ends.ts).
  expect(second.text).toBe("hello\n\nMZ: the named text part\n\n\npay here\n");
  expect(second.html).toContain("<p>pay here</p>");
  expect(second.attachments).toEqual([
    { filename: "x.exe", contentType: "text/plain", size: "MZ: the named text part".length, disposition: null, contentId: "<part2@sender.example>", names: ["x.exe"] },
    { filename: "invoice.html", contentType: "text/html", size: "<p>pay here</p>".length, disposition: "inline", contentId: null, names: ["invoice.html"] },
  ]);
  expect(second.parseError).toBeUndefined();
}, 30_000);

// The rules look into attached messages 20 deep (parse/limits.ts MAX_NESTED_MESSAGE_DEPTH); the
// post shows 3 levels inline (WEBHOOK_PARSE_MAX_RFC822_DEPTH: 20 levels of a 20 MB one-line text
// cost the delivery thread ~1 s and ~1.2 GB, 3 levels 0.2 s): a fourth is one message/rfc822
// attachment, the file a rule matched inside it only in `raw` (README: Webhooks).
test("an .exe four forwarded messages down: the rule sees it, the post lists the fourth message as one message/rfc822 attachment", async () => {
  let message = crlf([
    "From: x@sender.example", "Subject: innermost", "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="b0"', "",
    "--b0", "Content-Type: text/plain", "", "hi",
    "--b0", 'Content-Type: application/octet-stream; name="x.exe"', "Content-Transfer-Encoding: base64", "", "TVqQAAMAAAAEAAAA",
    "--b0--",
  ]);
  for (let level = 1; level <= 4; level++) {
    message = Buffer.concat([
      crlf([`From: f${level}@sender.example`, ...(level === 4 ? ["To: hook@company.com"] : []), `Subject: fwd ${level}`, "MIME-Version: 1.0", `Content-Type: multipart/mixed; boundary="m${level}"`, "", `--m${level}`, "Content-Type: text/plain", "", "see attached", `--m${level}`, "Content-Type: message/rfc822", ""]),
      message,
      crlf([`--m${level}--`]),
    ]);
  }
  const { payload } = await post(message);
  expect(payload.rule).toBe("hook-exe");
  expect(payload.attachments.map((a) => a.contentType)).toEqual(["message/rfc822"]);
  expect(payload.parseError).toBeUndefined();
}, 30_000);
