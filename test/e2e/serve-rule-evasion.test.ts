/**
 * The real `mailgw serve` (from source), over its socket, for what the differential reviews of
 * 2026-11-25 found (against Postfix 3.7 and Python's email package):
 * - addresses Postfix takes are taken (a quoted space, a carrier's dotted local part, `_` in a
 *   domain), `HELO host name` can send; SPEC §4's routing tricks are still refused;
 * - a rule cannot be slipped past with a comment inside an address, a header block ended by a
 *   line of spaces (whichever way a mail client reads on past it), a Content-Type that is not a
 *   type, or UTF-7: each gets the rule's 550.
 * - later the same day: an address that URL host parsing would cut (`v@company.com/evil.example`) is
 *   refused; a raw GBK subject, a decomposed file name and text past a broken part header reach
 *   the rules.
 * The server stays up throughout and stores what it answered 250 for.
 */
import { expect, test } from "bun:test";
import { RawClient, greet, terminated } from "../smtp/helpers.ts";
import { serveEachTest } from "../smtp/serve-process.ts";

const serve = serveEachTest();

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: ceo, priority: 50, action: reject, reject_message: "ceo rule", conditions: [{ field: from, operator: equals, value: ceo@company.com }] }
  - { name: invoice, priority: 40, action: reject, reject_message: "invoice rule", conditions: [{ field: subject, operator: contains, value: invoice }] }
  - { name: wire, priority: 30, action: reject, reject_message: "wire rule", conditions: [{ field: body, operator: contains, value: wire transfer }] }
  - { name: exe, priority: 20, action: reject, reject_message: "exe rule", conditions: [{ field: attachment, operator: ends_with, value: .exe }] }
  - { name: fapiao, priority: 45, action: reject, reject_message: "fapiao rule", conditions: [{ field: subject, operator: contains, value: 发票 }] }
  - { name: quote, priority: 15, action: reject, reject_message: "quote rule", conditions: [{ field: attachment, operator: contains, value: 견적서 }] }
`;

/** One transaction on a greeted connection; the reply to the final dot (or the first refusal). */
async function transaction(c: RawClient, from: string, to: string, message: string): Promise<string> {
  const mail = await c.cmd(`MAIL FROM:<${from}>`);
  if (!mail.startsWith("250")) return mail;
  const rcpt = await c.cmd(`RCPT TO:<${to}>`);
  if (!rcpt.startsWith("250")) return rcpt;
  expect(await c.cmd("DATA")).toStartWith("354");
  c.write(terminated(message));
  return c.reply();
}

test("serve: Postfix's addresses and a several-word HELO are taken; routing tricks are not", async () => {
  const s = await serve({}, RULES);
  const c = await RawClient.connect(s.smtpPort);
  expect(await c.reply()).toStartWith("220");
  expect(await c.cmd("HELO office scanner")).toStartWith("250");
  const plain = "From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n";
  for (const [from, to] of [['"john smith"@example.org', "sales@company.com"], ["taro..yamada@docomo.ne.jp", '"sales team"@company.com'], ["bounce@mail_out.example.com", "john..doe@company.com"]] as const) {
    expect({ from, to, reply: await transaction(c, from, to, plain) }).toEqual({ from, to, reply: expect.stringMatching(/^250 2\.0\.0 Queued as /) });
  }
  for (const trick of ["v%other.example@company.com", "v@[192.0.2.1]", '"v w"@other.example']) {
    expect(await c.cmd("RSET")).toStartWith("250");
    expect(await c.cmd("MAIL FROM:<a@b.example>")).toStartWith("250");
    expect({ trick, reply: await c.cmd(`RCPT TO:<${trick}>`) }).toEqual({ trick, reply: expect.stringMatching(/^550 5\.7\.1 /) });
  }
  await c.cmd("QUIT");
  const line = await s.waitForLog((l) => l.msg === "smtp session" && l.helo === "office");
  expect((line.messages as unknown[]).length).toBe(3);
});

test("serve: a comment in an address, a blank-looking line, a broken Content-Type and UTF-7 do not slip past a rule", async () => {
  const s = await serve({}, RULES);
  const c = await RawClient.connect(s.smtpPort);
  await greet(c);
  const cases: [string, string][] = [
    ["From: CEO <ceo@company.com (Chief)>\r\nSubject: hi\r\n\r\nhello\r\n", "550 5.7.1 ceo rule"],
    ["From: a@b.example\r\nSubject: hi\r\n \r\nPlease send the wire transfer.\r\n", "550 5.7.1 wire rule"],
    ["From: a@b.example\r\nSubject: hi\r\nContent-Type: text plain\r\n\r\nPlease send the wire transfer.\r\n", "550 5.7.1 wire rule"],
    ["From: a@b.example\r\nSubject: =?utf-7?Q?+AEkAbgB2AG8AaQBjAGU-?=\r\n\r\nhello\r\n", "550 5.7.1 invoice rule"],
    // Past a line of spaces and a junk line, the From and the attachment Thunderbird shows.
    ["Subject: hi\r\n \r\nX\r\nFrom: CEO <ceo@company.com>\r\n\r\nhello\r\n", "550 5.7.1 ceo rule"],
    [
      "From: a@b.example\r\nSubject: hi\r\n \r\nX\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n" +
        "--b1\r\nContent-Type: application/octet-stream; name=evil.exe\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b1--\r\n",
      "550 5.7.1 exe rule",
    ],
  ];
  for (const [message, expected] of cases) expect({ message, reply: await transaction(c, "a@b.example", "sales@company.com", message) }).toEqual({ message, reply: expected });
  // Still up, still storing.
  expect(await transaction(c, "a@b.example", "sales@company.com", "From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n")).toStartWith("250 2.0.0 Queued as ");
  await c.cmd("QUIT");
  expect((await fetch(`${s.httpUrl}/healthz`)).status).toBe(200);
});

test("serve: an address URL host parsing would cut is refused; GBK, decomposed text and text past a broken part header reach the rules", async () => {
  const s = await serve({}, RULES);
  const c = await RawClient.connect(s.smtpPort);
  await greet(c);
  // WHATWG host parsing read these as company.com: 250 and a recorded v@company.com before.
  for (const rcpt of ["v@company.com/evil.example", "v@company%2ecom", "v@company.com?x"]) {
    expect(await c.cmd("RSET")).toStartWith("250");
    expect(await c.cmd("MAIL FROM:<a@b.example>")).toStartWith("250");
    expect({ rcpt, reply: await c.cmd(`RCPT TO:<${rcpt}>`) }).toEqual({ rcpt, reply: expect.stringMatching(/^5\d\d /) });
  }
  expect(await c.cmd("RSET")).toStartWith("250");
  expect(await c.cmd("MAIL FROM:<ceo@company.com/attacker.example>")).toMatch(/^5\d\d /);
  expect(await c.cmd("RSET")).toStartWith("250");
  // A raw GBK subject of a multipart message, read in its text part's charset.
  const gbk = Buffer.from([0xb7, 0xa2, 0xc6, 0xb1]); // 发票
  expect(await c.cmd("MAIL FROM:<a@b.example>")).toStartWith("250");
  expect(await c.cmd("RCPT TO:<sales@company.com>")).toStartWith("250");
  expect(await c.cmd("DATA")).toStartWith("354");
  c.write(Buffer.concat([
    Buffer.from("From: a@b.example\r\nSubject: "), gbk,
    Buffer.from(`\r\nContent-Type: multipart/alternative; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain; charset=gb2312\r\nContent-Transfer-Encoding: base64\r\n\r\n${gbk.toString("base64")}\r\n--b1--\r\n.\r\n`),
  ]));
  expect(await c.reply()).toBe("550 5.7.1 fapiao rule");
  const cases: [string, string][] = [
    // A file name as macOS writes it (decomposed Hangul), against a rule that names it precomposed.
    [`From: a@b.example\r\nSubject: hi\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b1\r\nContent-Type: application/pdf; name="${"견적서.pdf".normalize("NFD")}"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b1--\r\n`, "550 5.7.1 quote rule"],
    // Text past a line that is no field in a part's header: Python shows it as the part's text.
    ["From: a@b.example\r\nSubject: hi\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n \r\nPlease send the wire transfer today.\r\n--b1--\r\n", "550 5.7.1 wire rule"],
  ];
  for (const [message, expected] of cases) expect({ message, reply: await transaction(c, "a@b.example", "sales@company.com", message) }).toEqual({ message, reply: expected });
  // Still up, still storing.
  expect(await transaction(c, "a@b.example", "sales@company.com", "From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n")).toStartWith("250 2.0.0 Queued as ");
  await c.cmd("QUIT");
  expect((await fetch(`${s.httpUrl}/healthz`)).status).toBe(200);
});

// smtp-server punycode-decodes every xn-- label, invalid ones too: `xn--company-` became `company`.
// Its label ends with '-': no host name as written, 501 (Postfix's answer; a relay would refuse the sender).
test("serve: an A-label IDNA refuses is not taken for one of our domains; 501 as written; serve stores after", async () => {
  const s = await serve({}, RULES);
  const c = await RawClient.connect(s.smtpPort);
  await greet(c);
  for (const rcpt of ["v@xn--company-.com", "v@company.xn--com-"]) {
    expect(await c.cmd("RSET")).toStartWith("250");
    expect(await c.cmd("MAIL FROM:<a@b.example>")).toStartWith("250");
    expect({ rcpt, reply: await c.cmd(`RCPT TO:<${rcpt}>`) }).toEqual({ rcpt, reply: expect.stringMatching(/^501 5\.1\.3 /) });
  }
  expect(await c.cmd("RSET")).toStartWith("250");
  expect(await c.cmd("MAIL FROM:<boss@xn--company-.com>")).toStartWith("501 5.1.7");
  const reply = await transaction(c, "boss@xn--zz.com", "sales@company.com", "From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n");
  expect(reply).toMatch(/^250 2\.0\.0 Queued as /);
  await c.cmd("QUIT");
  const line = await s.waitForLog((l) => l.msg === "smtp session" && l.helo === "client.example");
  expect(line).toMatchObject({ from: "boss@xn--zz.com", recipients: ["sales@company.com"], refused: ["v@xn--company-.com (501)", "v@company.xn--com- (501)"], decision: "archive" });
});
