/**
 * What a sender writes, as it comes out of the real `mailgw serve` (from source) on the operator's
 * side: a webhook receiver's JSON parser, `/stats.json` and `/stats` read with curl in a
 * terminal.
 * - A UTF-7 encoded word or text part whose shifted run is one half of a surrogate pair
 *   (`+2AA-`) reached the webhook post as a `\ud800` escape: valid for JavaScript, refused by
 *   strict readers (PostgreSQL's jsonb, Rust's serde_json), and Python cannot encode it back to
 *   UTF-8; it is U+FFFD now, as TextDecoder makes it for UTF-16.
 * - A subject with terminal escapes (OSC 0 sets the window title, CSI 2J clears the screen,
 *   U+009B is a CSI too), a CR and a bidi override, on a failed delivery: `/stats` carried the
 *   controls as raw bytes to whoever ran `curl /stats` in a terminal, and `/stats.json` the C1
 *   CSI and the override (JSON.stringify escapes only C0). The page now shows them as `?` (in
 *   Chromium too), and stats.json writes them as \uXXXX escapes that decode to the subject.
 * - Addresses of 254 characters, bidi overrides all but a number (written `\u202e` in the log, six each): one
 *   message to 100 of them made a 144 KB `smtp session` line, 100 messages in a session 600 KB,
 *   and journald splits a line past 48 KB into entries a log shipper cannot parse. Lines now
 *   name the first recipients and count them all, and the messages are flushed by size too.
 * - A refused recipient of an `a` and 200 emoji, logged cut at 256 UTF-16 units, ended in half
 *   an emoji: the JSON log line carried `\ud83d`, which strict readers refuse (Vector's
 *   serde_json), so a sender chose lines a log shipper could not read. It is U+FFFD now.
 * Ports: the webhook receiver's in 30000-30999 (loopback); serve's are 0.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { freePortsIn } from "../helpers/interop.ts";
import { RawClient, greet } from "../smtp/helpers.ts";
import { serveEachTest } from "../smtp/serve-process.ts";
import { startServeRawLog } from "../smtp/serve-raw-log.ts";

const serve = serveEachTest();

/** Each post's body as it arrived (text), by path; `/fail` answers 400, so its delivery fails. */
const posts: { path: string; body: string }[] = [];
let receiver: ReturnType<typeof Bun.serve>;

beforeAll(async () => {
  const [port] = await freePortsIn(1, 30000, 30999);
  receiver = Bun.serve({
    port,
    hostname: "127.0.0.1",
    async fetch(req) {
      const path = new URL(req.url).pathname;
      posts.push({ path, body: await req.text() });
      return new Response(path === "/fail" ? "refused" : "ok", { status: path === "/fail" ? 400 : 200 });
    },
  });
});

afterAll(() => receiver?.stop(true));

function rulesYaml(): string {
  const url = (path: string) => `"http://127.0.0.1:${receiver.port}${path}"`;
  return `domains: [company.com]
default: { action: archive, category: default }
rules:
  - name: hook
    priority: 20
    action: webhook
    url: ${url("/in")}
    conditions:
      - { field: rcpt, operator: equals, value: hook@company.com }
  - name: hook-fails
    priority: 10
    action: webhook
    url: ${url("/fail")}
    conditions:
      - { field: rcpt, operator: equals, value: fail@company.com }
`;
}

/** One message over SMTP; returns mailgw's queue id. */
async function send(port: number, rcpt: string, message: string): Promise<string> {
  const c = await RawClient.connect(port);
  try {
    await greet(c, "client.test");
    expect(await c.cmd("MAIL FROM:<sender@client.test>")).toStartWith("250");
    expect(await c.cmd(`RCPT TO:<${rcpt}>`)).toStartWith("250");
    expect(await c.cmd("DATA")).toStartWith("354");
    c.write(Buffer.from(`${message}\r\n.\r\n`, "latin1"));
    const reply = await c.reply(15_000);
    const id = /^250 2\.0\.0 Queued as (\S+)/.exec(reply)?.[1];
    if (!id) throw new Error(`mailgw answered ${reply}`);
    return id;
  } finally {
    c.end();
  }
}

async function postFor(id: string, path = "/in"): Promise<string> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const found = posts.find((p) => p.path === path && p.body.includes(`"id":"${id}"`));
    if (found) return found.body;
    if (Date.now() > deadline) throw new Error(`no post for ${id} on ${path}`);
    await Bun.sleep(50);
  }
}

/** A `\uD800`-`\uDFFF` escape that is not half of a pair: what strict JSON readers refuse. */
const LONE_SURROGATE_ESCAPE = /\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f])|(?<!\\ud[89ab][0-9a-f]{2})\\ud[c-f][0-9a-f]{2}/i;

test("UTF-7 halves of surrogate pairs reach the webhook post as U+FFFD, not as lone \\ud800 escapes", async () => {
  const s = await serve({}, rulesYaml());
  const message = [
    "From: =?utf-7?Q?Eve+2AA-?= <eve@client.test>",
    "To: hook@company.com",
    "Subject: =?utf-7?Q?lone+2AA-high+3AA-low+2D3eAA-pair?=",
    "Content-Type: multipart/mixed; boundary=b",
    "",
    "--b",
    "Content-Type: text/plain; charset=utf-7",
    "",
    "body +2AA- text",
    "--b",
    'Content-Type: application/octet-stream; name="=?utf-7?Q?f+2AA-.exe?="',
    "",
    "AAAA",
    "--b--",
  ].join("\r\n");
  const id = await send(s.smtpPort, "hook@company.com", message);
  const body = await postFor(id);
  expect(body).not.toMatch(LONE_SURROGATE_ESCAPE);
  const post = JSON.parse(body) as { subject: string; text: string; from: { name: string }; attachments: { filename: string }[] };
  expect(post.subject).toBe("lone\ufffdhigh\ufffdlow😀pair");
  expect(post.text).toContain("body \ufffd text");
  expect(post.from.name).toBe("Eve\ufffd");
  expect(post.attachments.map((a) => a.filename)).toEqual(["f\ufffd.exe"]);
});

const CHROMIUM = "/usr/bin/chromium";

/** Control characters a terminal acts on (all but tab and LF), and the bidi controls JSON.stringify leaves raw. */
const RAW_CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/;
const RAW_C1_OR_BIDI = /[\x7f-\x9f\u202a-\u202e\u2066-\u2069]/;

/** A failed delivery of a message whose subject carries terminal escapes, a CR and a bidi override; returns serve and the id. */
async function failedHostileSubject() {
  const s = await serve({}, rulesYaml());
  const encoded = "=?utf-8?q?a=1B]0;pwned=07b=1B[2Jc=0D=0Ad=C2=9Be=E2=80=AEf?=";
  const id = await send(s.smtpPort, "fail@company.com", `From: eve@client.test\r\nTo: fail@company.com\r\nSubject: ${encoded}\r\n\r\nhi`);
  await s.waitForLog((l) => l.msg === "failed" && l.id === id, 15_000);
  return { s, id };
}

/** The subject as sent (decoded), and as the page shows it. */
const HOSTILE_SUBJECT = "a\x1b]0;pwned\x07b\x1b[2Jc\r\nd\x9be\u202ef";
const SHOWN_SUBJECT = "a?]0;pwned?b?[2Jc\nd?e\u202ef";

test("a subject's terminal escapes reach /stats as '?', in the bytes and in Chromium", async () => {
  const { s, id } = await failedHostileSubject();
  const page = await (await fetch(new URL("stats", s.httpUrl))).text();
  expect(page).toContain(SHOWN_SUBJECT);
  expect(page).not.toMatch(RAW_CONTROL);

  if (!existsSync(CHROMIUM)) return console.log(`skipping the Chromium half: ${CHROMIUM} not found`);
  const profile = mkdtempSync(join(tmpdir(), "mailgw-chromium-"));
  const browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ["--headless", "--no-sandbox", "--disable-gpu"] });
  try {
    const tab = await browser.newPage();
    await tab.goto(new URL("stats", s.httpUrl).href, { waitUntil: "load" });
    expect(await tab.locator(`tr:has(code:text-is("${id}")) .subject`).textContent()).toBe(SHOWN_SUBJECT);
  } finally {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  }
}, 60_000);

test("/stats.json writes a subject's C1 controls and bidi override as \\uXXXX escapes that decode to the subject", async () => {
  const { s, id } = await failedHostileSubject();
  const raw = await (await fetch(new URL("stats.json", s.httpUrl))).text();
  expect(raw).not.toMatch(RAW_C1_OR_BIDI);
  expect(raw).toContain("d\\u009be\\u202ef");
  const stats = JSON.parse(raw) as { failedDeliveries: { messageId: string; subject: string }[] };
  expect(stats.failedDeliveries.find((f) => f.messageId === id)?.subject).toBe(HOSTILE_SUBJECT);
}, 30_000);

/** journald's LineMax: a longer line is split into several journal entries. */
const JOURNALD_LINE_MAX = 48 * 1024;


/**
 * Local parts of 236 characters before `tag`: with `@company.com`, 254 characters (the most).
 * Bidi overrides are 1,430 characters as the log writes them; CJK characters one each but three
 * bytes in UTF-8: counted in characters, 17 such messages made a 53 KB `smtp session messages` line.
 */
const LOCALS = {
  bidi: (tag: number): string => `${"\u202e".repeat(236)}${String(tag).padStart(6, "0")}`,
  CJK: (tag: number): string => `${"\u6587".repeat(236)}${String(tag).padStart(6, "0")}`,
};

for (const [kind, longLocal] of Object.entries(LOCALS)) for (const format of ["json", "text"] as const) {
  test(`${format} log: long ${kind} addresses keep every line under journald's 48 KB, ids and counts kept`, async () => {
    const s = await startServeRawLog(format);
    try {
      const c = await RawClient.connect(s.smtpPort);
      await greet(c, "client.test");
      const ids: string[] = [];
      const send = async (from: string, rcpts: string[]): Promise<void> => {
        expect(await c.cmd(`MAIL FROM:<${from}> SMTPUTF8`)).toStartWith("250");
        for (const r of rcpts) expect(await c.cmd(`RCPT TO:<${r}>`)).toStartWith("250");
        expect(await c.cmd("DATA")).toStartWith("354");
        const reply = await c.cmd("Subject: x\r\n\r\nhi\r\n.", 15_000);
        ids.push(/Queued as (\S+)/.exec(reply)?.[1] ?? reply);
      };
      // 30 messages to 3 such recipients each, then one to 100 of them.
      for (let m = 0; m < 30; m++) await send(`${longLocal(m)}@client.test`, [0, 1, 2].map((i) => `${longLocal(i)}@company.com`));
      await send(`${longLocal(99)}@client.test`, Array.from({ length: 100 }, (_, i) => `${longLocal(i)}@company.com`));
      // Refused recipients (not in domains) with such addresses too.
      expect(await c.cmd(`MAIL FROM:<${longLocal(100)}@client.test> SMTPUTF8`)).toStartWith("250");
      for (let i = 0; i < 10; i++) expect(await c.cmd(`RCPT TO:<${longLocal(i)}@other.test>`)).toStartWith("550");
      await c.cmd("QUIT");
      c.end();
      const session = await s.waitForLine((l) => l.includes("smtp session") && !l.includes("smtp session messages") && l.includes(ids.at(-1)!));
      const sessionLines = s.lines.filter((l) => l.includes("smtp session"));
      for (const l of sessionLines) expect(Buffer.byteLength(l)).toBeLessThan(JOURNALD_LINE_MAX);
      // Flushed by size: more than one line, and every id is in one of them.
      expect(sessionLines.length).toBeGreaterThan(1);
      for (const id of ids) expect(sessionLines.some((l) => l.includes(id))).toBe(true);
      expect(session).toMatch(/recipients_count["=:]+100\b/);
      expect(session).toMatch(/refused_count["=:]+10\b/);
    } finally {
      s.proc.kill("SIGKILL");
    }
  }, 60_000);
}

test("json log: a refused address cut in the middle of an emoji is logged with U+FFFD, not a lone \\ud83d", async () => {
  const s = await startServeRawLog("json");
  try {
    const c = await RawClient.connect(s.smtpPort);
    await greet(c, "client.test");
    expect(await c.cmd("MAIL FROM:<a@client.test> SMTPUTF8")).toStartWith("250");
    expect(await c.cmd(`RCPT TO:<a${"\u{1F600}".repeat(200)}@company.com>`)).toStartWith("501");
    await c.cmd("QUIT");
    c.end();
    const line = await s.waitForLine((l) => l.includes('"msg":"smtp session"') && l.includes("(501)"));
    expect(line).not.toMatch(LONE_SURROGATE_ESCAPE);
    const refused = (JSON.parse(line) as { refused: string[] }).refused[0];
    expect(refused).toBe(`a${"\u{1F600}".repeat(127)}\ufffd (501)`);
  } finally {
    s.proc.kill("SIGKILL");
  }
}, 30_000);
