/**
 * Bad input over raw sockets (SPEC §4): SMTP smuggling payloads give exactly one message,
 * NUL bytes, 10,000-byte lines, over-long lines, garbage commands, bare LF, a client that
 * stalls mid-DATA, slow clients (DATA and session deadlines). The server must stay up: every
 * test ends with a fresh connection completing a transaction.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { RawClient, greet, sendMail, simpleMessage, startTestServer, terminated, type TestServer } from "./helpers.ts";
import { waitFor } from "../delivery/helpers.ts";

let server: TestServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
}, 60_000);

async function stillServes(s: TestServer): Promise<void> {
  const c = await RawClient.connect(s.port);
  await greet(c);
  expect(await sendMail(c)).toStartWith("250 2.0.0");
  c.end();
}

const SMUGGLING = ["\n.\n", "\r.\r", "\r.\n", "\n.\r", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r", "\r\n\x00.\r\n", "\r\n.\x00\r\n"];

describe("SMTP smuggling", () => {
  for (const sep of SMUGGLING) {
    test(`payload ${JSON.stringify(sep)} + second MAIL/RCPT/DATA → exactly one message`, async () => {
      server = await startTestServer();
      const c = await RawClient.connect(server.port);
      await greet(c);
      await c.cmd("MAIL FROM:<a@sender.example>");
      await c.cmd("RCPT TO:<b@company.com>");
      expect(await c.cmd("DATA")).toStartWith("354");
      const smuggled = "MAIL FROM:<admin@company.com>\r\nRCPT TO:<victim@company.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n";
      c.write(`Subject: first\r\n\r\nbody${sep}${smuggled}.\r\n`);
      expect(await c.reply()).toStartWith("250 2.0.0");
      expect(await c.cmd("NOOP")).toStartWith("250");
      await c.cmd("QUIT");
      expect(server.sink.messages).toHaveLength(1);
      expect(server.sink.messages[0]?.raw.toString("latin1")).toContain("Subject: smuggled");
    });
  }
});

describe("malformed input", () => {
  test("NUL bytes in commands and in DATA", async () => {
    server = await startTestServer();
    const c = await RawClient.connect(server.port);
    await greet(c);
    expect(await c.cmd("NO\x00OP")).toMatch(/^5\d\d /);
    expect(await c.cmd("MAIL FROM:<a\x00b@sender.example>")).toMatch(/^501 /);
    expect(await sendMail(c, "b@company.com", "Subject: nul\x00\r\n\r\nbo\x00dy\r\n")).toStartWith("250 2.0.0");
    expect(server.sink.messages[0]?.raw.includes(Buffer.from("bo\x00dy"))).toBe(true);
  });

  test("10,000-byte command line gets a 5xx and the session goes on; past 16 KB: 500 5.5.2, skipped, the session goes on", async () => {
    server = await startTestServer();
    const c = await RawClient.connect(server.port);
    await greet(c);
    expect(await c.cmd(`MAIL FROM:<${"a".repeat(10_000)}@sender.example>`)).toMatch(/^5\d\d /);
    expect(await c.cmd(`X${"y".repeat(10_000)}`)).toMatch(/^5\d\d /);
    expect(await sendMail(c)).toStartWith("250");
    // In one write (one read for the server) with a command after it: both answered, in order.
    c.write(`NOOP ${"z".repeat(20_000)}\r\nNOOP\r\n`);
    expect(await c.reply()).toBe("500 5.5.2 Error: line too long");
    expect(await c.reply()).toStartWith("250");
    // 3 MB without a line end, in pieces, then the end and a command in the same write.
    for (let i = 0; i < 48; i++) c.write("w".repeat(65_536));
    c.write("tail\r\nNOOP\r\n");
    expect(await c.reply()).toBe("500 5.5.2 Error: line too long");
    expect(await c.reply()).toStartWith("250");
    // Inside a transaction: MAIL and RCPT stand, the message goes through.
    expect(await c.cmd("MAIL FROM:<a@sender.example>")).toStartWith("250");
    expect(await c.cmd(`RCPT TO:<${"r".repeat(17_000)}@company.com>`)).toBe("500 5.5.2 Error: line too long");
    expect(await c.cmd("RCPT TO:<b@company.com>")).toStartWith("250");
    expect(await c.cmd("DATA")).toStartWith("354");
    // DATA lines have no such limit: a 40,000-byte line is part of the message.
    c.write(terminated(`Subject: wide\r\n\r\n${"d".repeat(40_000)}\r\n`));
    expect(await c.reply()).toStartWith("250 2.0.0");
    expect(server.sink.messages.at(-1)?.raw.toString("latin1")).toContain("d".repeat(40_000));
    await c.cmd("QUIT");
    await stillServes(server);
  });

  test("10,000-byte lines and bare LF inside DATA are accepted as they are", async () => {
    server = await startTestServer();
    const c = await RawClient.connect(server.port);
    await greet(c);
    const long = "L".repeat(10_000);
    expect(await sendMail(c, "b@company.com", `Subject: long\nX: bare-lf\r\n\r\n${long}\r\n`)).toStartWith("250");
    expect(server.sink.messages[0]?.raw.toString("latin1")).toContain(long);
  });

  test("garbage commands, 8-bit bytes, HTTP requests: errors, then the session or server goes on", async () => {
    server = await startTestServer();
    const c = await RawClient.connect(server.port);
    await greet(c);
    expect(await c.cmd("FOO bar")).toMatch(/^500 /);
    expect(await c.cmd("\xff\xfe\xfd")).toMatch(/^500 /);
    expect(await c.cmd("MAIL")).toMatch(/^501 /);
    expect(await c.cmd("RCPT TO:<b@company.com>")).toMatch(/^503 /);
    expect(await c.cmd("DATA")).toMatch(/^503 /);
    expect(await sendMail(c)).toStartWith("250");
    // DATA with an argument is refused (as Postfix does), not taken as DATA.
    expect(await c.cmd("MAIL FROM:<a@sender.example>")).toStartWith("250");
    expect(await c.cmd("RCPT TO:<b@company.com>")).toStartWith("250");
    expect(await c.cmd("DATA x")).toBe("501 5.5.4 Syntax: DATA");
    expect(await c.cmd("DATA ")).toStartWith("354");
    c.write(terminated(simpleMessage()));
    expect(await c.reply()).toStartWith("250");
    const h = await RawClient.connect(server.port);
    await h.reply();
    expect(await h.cmd("GET / HTTP/1.1")).toMatch(/^421 /);
    await stillServes(server);
  });

  test("a client that stalls mid-DATA is timed out; nothing is stored; server stays up", async () => {
    server = await startTestServer({ limits: { idleTimeoutMs: 400 } });
    const c = await RawClient.connect(server.port);
    await greet(c);
    await c.cmd("MAIL FROM:<a@sender.example>");
    await c.cmd("RCPT TO:<b@company.com>");
    await c.cmd("DATA");
    c.write("Subject: half\r\n\r\nhalf a mess");
    // RFC 5321 §4.2: a 421 names the server, as Postfix's `421 4.4.2 mx.test Error: timeout exceeded`.
    expect(await c.reply(3000)).toBe("421 4.4.2 mx.test Timeout - closing connection");
    expect(await c.waitClose(7000)).toBe(true);
    expect(server.sink.messages).toHaveLength(0);
    // The session line names the 421 the client got, not a 451 that was never written.
    await waitFor(() => server!.sessions.length === 1, 5_000, "the session line");
    expect(server.sessions[0]?.reply).toBe("421 4.4.2 mx.test Timeout - closing connection");
    expect(server.sessions[0]?.error ?? "").not.toContain("connection closed before the reply"); // the client did not go
    await stillServes(server);
  });

  test("a slow client trickling bytes hits the DATA deadline; another the session deadline", async () => {
    server = await startTestServer({ limits: { dataTimeoutMs: 600, sessionTimeoutMs: 1500, idleTimeoutMs: 5000 } });
    const c = await RawClient.connect(server.port);
    await greet(c);
    await c.cmd("MAIL FROM:<a@sender.example>");
    await c.cmd("RCPT TO:<b@company.com>");
    await c.cmd("DATA");
    const trickle = setInterval(() => c.write("x"), 100);
    const reply = await c.reply(3000);
    clearInterval(trickle);
    expect(reply).toMatch(/^421 4\.4\.2 .*DATA time limit/);
    const n = await RawClient.connect(server.port);
    await greet(n);
    const noop = setInterval(() => n.write("NOOP\r\n"), 100);
    let last = "";
    while (!last.startsWith("421") && !n.closed) last = await n.reply(3000);
    clearInterval(noop);
    expect(last).toMatch(/^421 4\.4\.2 .*Session time limit/);
    expect(server.sink.messages).toHaveLength(0);
  });

  test("a client that disconnects mid-DATA stores nothing", async () => {
    server = await startTestServer();
    const c = await RawClient.connect(server.port);
    await greet(c);
    await c.cmd("MAIL FROM:<a@sender.example>");
    await c.cmd("RCPT TO:<b@company.com>");
    await c.cmd("DATA");
    c.write("Subject: gone\r\n\r\npartial");
    c.end();
    await Bun.sleep(200);
    expect(server.sink.messages).toHaveLength(0);
    await waitFor(() => server!.sessions.length === 1, 5_000, "the session line");
    expect(String(server.sessions[0]?.reply)).not.toMatch(/^451/); // nothing was answered
    await stillServes(server);
  });
});
