/**
 * Small SMTP-conformance points a mail admin comparing `mailgw serve` with Postfix notices, each
 * checked against the RFC and a Postfix 3.7 given the same command lines, and held here through
 * the real serve over its socket.
 */
import { describe, expect, test } from "bun:test";
import { startCapture, waitUntil } from "../helpers/interop.ts";
import { RawClient, makeCert, sendMail, tempDir } from "../smtp/helpers.ts";
import { archivedCopy, serveEachTest, until } from "../smtp/serve-process.ts";

const serve = serveEachTest();

/** The `with` keyword of the Received header serve prepended to message `reply` (its `250 … Queued as <id>`). */
async function receivedWith(dir: string, reply: string): Promise<string> {
  const id = /Queued as (\S+)/.exec(reply)?.[1] ?? "";
  let copy: Buffer | null = null;
  await until(`${id} archived`, async () => (copy = await archivedCopy(dir, id)) !== null, 5000);
  const received = /^Received:[^]*?;/m.exec(String(copy))?.[0] ?? "";
  return /\bwith (\S+)/.exec(received)?.[1] ?? received;
}

describe("Received header transmission type (RFC 3848)", () => {
  // Postfix writes `with SMTP` for HELO under TLS; `SMTPS` is no registered type.
  test("HELO after STARTTLS: with SMTP; EHLO after STARTTLS: with ESMTPS; plain HELO: with SMTP", async () => {
    const { key, cert } = makeCert(tempDir());
    const s = await serve({ SMTP_TLS_KEY: key, SMTP_TLS_CERT: cert });
    const types: string[] = [];
    for (const [hello, tls] of [["HELO", true], ["EHLO", true], ["HELO", false]] as const) {
      const c = await RawClient.connect(s.smtpPort);
      expect(await c.reply()).toStartWith("220 ");
      expect(await c.cmd(`${hello} client.example`)).toStartWith("250");
      if (tls) {
        expect(await c.cmd("STARTTLS")).toStartWith("220 ");
        await c.upgrade();
        expect(await c.cmd(`${hello} client.example`)).toStartWith("250");
      }
      types.push(await receivedWith(s.dir, await sendMail(c)));
      c.end();
    }
    expect(types).toEqual(["SMTP", "ESMTPS", "SMTP"]);
  }, 30_000);
});

describe("every 421 names the server (RFC 5321 §3.8, §4.2)", () => {
  // Postfix: `421 4.4.2 mx.test Error: timeout exceeded`, `421 4.7.0 mx.test Error: too many errors`.
  // The idle timeout (smtp-server's too) is held in test/smtp/bad-input.test.ts: serve's is 2 minutes.
  test("too many unrecognized commands, an HTTP request line: 421 <enhanced code> mx.test …", async () => {
    const s = await serve({});
    const junk = await RawClient.connect(s.smtpPort);
    expect(await junk.reply()).toStartWith("220 mx.test ");
    let last = "";
    for (let i = 0; i < 10 && !last.startsWith("421"); i++) last = await junk.cmd(`FOO${i}`);
    expect(last).toMatch(/^421 4\.\d\.\d mx\.test Error: too many unrecognized commands/);
    expect(await junk.waitClose()).toBe(true);
    const http = await RawClient.connect(s.smtpPort);
    expect(await http.reply()).toStartWith("220 mx.test ");
    expect(await http.cmd("GET / HTTP/1.1")).toMatch(/^421 4\.\d\.\d mx\.test HTTP requests not allowed/);
    expect(await http.waitClose()).toBe(true);
  }, 30_000);
});

describe("whitespace between a command's words (Postfix's smtpd_strict_rfc821_envelopes=no)", () => {
  // Postfix 3.7 answers 250 to each of these; smtp-server answered 501 (two spaces) or 500 (a tab).
  test("MAIL  FROM, RCPT   TO, tabs: 250 and the message stored with the envelope as meant", async () => {
    const s = await serve({});
    const c = await RawClient.connect(s.smtpPort);
    expect(await c.reply()).toStartWith("220 ");
    expect(await c.cmd("EHLO\tclient.example")).toStartWith("250");
    expect(await c.cmd("MAIL  FROM:<a@sender.example>")).toBe("250 2.1.0 Accepted");
    expect(await c.cmd("RSET")).toStartWith("250");
    expect(await c.cmd("MAIL\tFROM:\t<a@sender.example> SIZE=100")).toBe("250 2.1.0 Accepted");
    expect(await c.cmd("RCPT  TO:<b@company.com>")).toBe("250 2.1.5 Accepted");
    expect(await c.cmd('rcpt \t to:<"sales  team"@company.com>')).toBe("250 2.1.5 Accepted");
    // The domain check is not bypassed by the spacing: another domain is still relaying denied.
    expect(await c.cmd("RCPT   TO:<b@other.example>")).toStartWith("550 5.7.1 Relaying denied");
    expect(await c.cmd("RCPT  TO:<@company.com:v@other.example>")).toStartWith("550 5.7.1 ");
    expect(await c.cmd("DATA")).toStartWith("354");
    c.write("Subject: spaced\r\n\r\nhi\r\n.\r\n");
    expect(await c.reply()).toStartWith("250 2.0.0 Queued as ");
    expect(await c.cmd("NOOP  x")).toStartWith("250");
    expect(await c.cmd("QUIT")).toStartWith("221");
    const line = await s.waitForLog((l) => l.msg === "smtp session" && l.helo === "client.example");
    expect(line).toMatchObject({ from: "a@sender.example", recipients: ["b@company.com", '"sales  team"@company.com'] });
  }, 30_000);
});

describe("a stray CR before a command line's CRLF", () => {
  // `\r\r\n`: CRLF written through a text-mode stream. Postfix 3.7 reads the CR as whitespace and
  // answers 354; smtp-server took MAIL and RCPT (the CR trimmed with the address) but DATA got 500.
  test("EHLO, MAIL, RCPT, DATA, QUIT each ending in \\r\\r\\n: the message is taken", async () => {
    const s = await serve({});
    const c = await RawClient.connect(s.smtpPort);
    expect(await c.reply()).toStartWith("220 ");
    for (const [line, code] of [["EHLO client.example", "250"], ["MAIL FROM:<a@sender.example>", "250"], ["RCPT TO:<b@company.com>", "250"], ["DATA", "354"]] as const) {
      c.write(`${line}\r\r\n`);
      expect({ line, reply: (await c.reply()).slice(0, 3) }).toEqual({ line, reply: code });
    }
    c.write("Subject: cr\r\n\r\nhi\r\n.\r\n");
    expect(await c.reply()).toStartWith("250 2.0.0 Queued as ");
    c.write("QUIT\r\r\n");
    expect(await c.reply()).toStartWith("221 ");
    const line = await s.waitForLog((l) => l.msg === "smtp session" && l.helo === "client.example");
    expect(line).toMatchObject({ from: "a@sender.example", recipients: ["b@company.com"] });
  }, 30_000);
});

describe("a domain ending in the DNS root's dot (`company.com.`)", () => {
  // Postfix 3.7 takes `RCPT TO:<b@company.com.>` and `MAIL FROM:<a@sender.example.>` (trivial-rewrite
  // strips the dot), checks relay_domains on the rest (`b@other.example.` 554) and relays both
  // addresses without the dot; `company.com..` is 501. mailgw answered 501 to both, and the mail bounced.
  const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - name: to-b
    priority: 10
    action: forward
    archive: true
    forward_to: dest@final.example
    conditions:
      - { field: rcpt, operator: equals, value: b@company.com }
`;

  test("taken as the domain without the dot: the allow-list, the rules, the Received header and the relay see it so", async () => {
    const relay = await startCapture(0);
    let s: Awaited<ReturnType<typeof serve>> | null = null;
    try {
      s = await serve({ RELAY_SMTP_HOST: "127.0.0.1", RELAY_SMTP_PORT: String(relay.port), RELAY_SMTP_SECURE: "none" }, RULES);
      const c = await RawClient.connect(s.smtpPort);
      expect(await c.reply()).toStartWith("220 ");
      expect(await c.cmd("EHLO client.example")).toStartWith("250");
      expect(await c.cmd("MAIL FROM:<a@Sender.example.>")).toBe("250 2.1.0 Accepted");
      // Another domain's dotted form is still relaying denied; two dots or a dot alone are no domain.
      expect(await c.cmd("RCPT TO:<b@other.example.>")).toStartWith("550 5.7.1 Relaying denied");
      expect(await c.cmd("RCPT TO:<b@company.com..>")).toStartWith("501 5.1.3 ");
      expect(await c.cmd("RCPT TO:<b@.>")).toStartWith("501 5.1.3 ");
      expect(await c.cmd("RCPT TO:<b@company.com.>")).toBe("250 2.1.5 Accepted");
      expect(await c.cmd("DATA")).toStartWith("354");
      c.write("Message-ID: <root-dot@sender.example>\r\nSubject: dot\r\n\r\nhi\r\n.\r\n");
      const reply = await c.reply();
      expect(reply).toStartWith("250 2.0.0 Queued as ");
      c.end();
      const line = await s.waitForLog((l) => l.msg === "smtp session" && l.helo === "client.example");
      expect(line).toMatchObject({ from: "a@sender.example", recipients: ["b@company.com"], decision: "forward" });
      expect(await receivedFor(s.dir, reply)).toBe("for <b@company.com>");
      await waitUntil("the forward at the relay", () => relay.captured.length > 0, 15_000);
      expect(relay.captured.map((m) => ({ from: m.from, to: m.to }))).toEqual([{ from: "a@sender.example", to: ["dest@final.example"] }]);
    } finally {
      // serve first: the capture's close waits for the pooled relay connection to end.
      await s?.stop();
      await relay.close();
    }
  }, 40_000);
});

/** The `for <…>` clause of the Received header serve prepended to message `reply`. */
async function receivedFor(dir: string, reply: string): Promise<string> {
  const id = /Queued as (\S+)/.exec(reply)?.[1] ?? "";
  let copy: Buffer | null = null;
  await until(`${id} archived`, async () => (copy = await archivedCopy(dir, id)) !== null, 5000);
  const received = /^Received:[^]*?;/m.exec(String(copy))?.[0] ?? "";
  return /\bfor <[^>]*>/.exec(received)?.[0] ?? received;
}

describe("a message body read as commands after a refused DATA (RFC 2920 §3.1: the client must wait for 354)", () => {
  // A body holding an SMTP transaction, sent by a client that did not wait for the 354, to a
  // recipient we refuse. Postfix 3.7 hangs up at a header line ("non-SMTP command"), and with
  // smtpd_forbid_unauth_pipelining (the default since 3.9) at anything sent with the refused DATA.
  // mailgw answered each line and took the message the body wrote, with the body's envelope.
  const SMUGGLED = "RSET\r\nMAIL FROM:<ceo@company.com>\r\nRCPT TO:<finance@company.com>\r\nDATA\r\nSubject: pay now\r\n\r\nwire it\r\n.\r\nQUIT\r\n";
  const OPEN = "MAIL FROM:<a@sender.example>\r\nRCPT TO:<x@other.example>\r\nDATA\r\n";

  /** The replies to each write (as many as it is owed), then whether the server hung up. */
  async function play(port: number, writes: [string, number][]): Promise<string[]> {
    const c = await RawClient.connect(port);
    expect(await c.reply()).toStartWith("220 ");
    expect(await c.cmd("EHLO client.example")).toStartWith("250");
    const replies: string[] = [];
    for (const [bytes, owed] of writes) {
      c.write(bytes);
      for (let i = 0; i < owed; i++) replies.push(await c.reply());
    }
    replies.push((await c.waitClose(2000)) ? "closed" : "open");
    c.end();
    return replies;
  }

  test("the body in the same write as the refused DATA, or a header line later: 421 and closed, the body's message not taken", async () => {
    const s = await serve({});
    const sameWrite = await play(s.smtpPort, [[`${OPEN}Hello Bob,\r\n${SMUGGLED}`, 4]]);
    expect(sameWrite).toEqual([
      "250 2.1.0 Accepted",
      "550 5.7.1 Relaying denied",
      "503 5.5.1 Error: need RCPT command",
      "421 4.5.0 mx.test Error: SMTP protocol synchronization (input sent after a refused DATA), closing connection",
      "closed",
    ]);
    const laterWrite = await play(s.smtpPort, [[OPEN, 3], [`From: a@sender.example\r\nSubject: hi\r\n\r\n${SMUGGLED}`, 1]]);
    expect(laterWrite.slice(3)).toEqual(["421 4.5.0 mx.test Error: message header sent as a command, closing connection", "closed"]);
    // What the client writes after reading the refusal is still a command: RSET, and a message.
    const c = await RawClient.connect(s.smtpPort);
    expect(await c.reply()).toStartWith("220 ");
    expect(await c.cmd("EHLO client.example")).toStartWith("250");
    c.write(OPEN);
    for (const code of ["250", "550", "503"]) expect((await c.reply()).slice(0, 3)).toBe(code);
    expect(await c.cmd("RSET")).toStartWith("250");
    expect(await sendMail(c)).toStartWith("250 2.0.0 Queued as ");
    c.end();
    await Bun.sleep(300);
    const sessions = s.logs.filter((l) => l.msg === "smtp session");
    expect(sessions.filter((l) => l.from === "ceo@company.com" || JSON.stringify(l).includes("finance@company.com"))).toEqual([]);
    expect(sessions.map((l) => l.recipients ?? [])).toContainEqual(["b@company.com"]);
  }, 30_000);
});
