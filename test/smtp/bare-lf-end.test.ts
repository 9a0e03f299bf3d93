/**
 * bare-lf-end.ts: which data tails count as a bare-LF dot line, and the idle timeout's 421
 * when it comes before the short wait (a test server with shortened limits). The real serve's
 * behaviour is in test/e2e/serve-bare-lf-end.test.ts.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { endsWithBareLfDotLine } from "../../src/smtp/bare-lf-end.ts";
import { RawClient, greet, sendMail, startTestServer, type TestServer } from "./helpers.ts";
import { waitFor } from "../delivery/helpers.ts";

let server: TestServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
}, 30_000);

describe("endsWithBareLfDotLine", () => {
  const cases: [string, boolean][] = [
    ["x\n.\n", true],
    ["\r\n.\n", true],
    ["\n\n.\n", true],
    ["ab\n.\n", true],
    ["abx\n.\r\n", true],
    ["\n.\r\n", true], // the whole data: an empty first line with a bare LF, then the dot
    [".\n", true], // the whole data
    ["\r\n.\r\n", false], // the real end (never still in DATA)
    ["x\r\n..\n", false], // a stuffed dot: content
    ["y\n..\n", false],
    ["ab\n.x\n", false],
    ["abc.\n", false], // a dot at the end of a line
    ["\r\n.\r", false], // bare CR: never an end, no hint either
    ["a\r.\r", false],
    ["\r\n\r\n", false],
    ["", false],
  ];
  for (const [tail, expected] of cases) {
    test(`${JSON.stringify(tail)} → ${expected}`, () => expect(endsWithBareLfDotLine(tail)).toBe(expected));
  }
});

describe("a client resting at a bare-LF dot line", () => {
  test("the idle timeout, when it comes first, says the cause too; the server goes on", async () => {
    server = await startTestServer({ limits: { idleTimeoutMs: 400, bareLfEndWaitMs: 60_000 } });
    const c = await RawClient.connect(server.port);
    await greet(c);
    await c.cmd("MAIL FROM:<a@sender.example>");
    await c.cmd("RCPT TO:<b@company.com>");
    expect(await c.cmd("DATA")).toStartWith("354");
    c.write("Subject: lf\n\nx\n.\n");
    expect(await c.reply(3_000)).toStartWith("421 4.4.2 mx.test Timeout waiting for <CR><LF>.<CR><LF>: the data ends with a \".\" line ending in bare <LF>");
    expect(await c.waitClose(5_000)).toBe(true);
    await waitFor(() => server!.sessions.length === 1, 5_000, "the session line");
    expect(server.sessions[0]?.error).toContain("bare-LF dot line");
    expect(server.sink.messages).toHaveLength(0);
    const next = await RawClient.connect(server.port);
    await greet(next);
    expect(await sendMail(next)).toStartWith("250 2.0.0");
  });

  test("a bare-LF dot line inside a message is content up to CRLF.CRLF; a plain stall mid-DATA keeps the plain timeout text", async () => {
    server = await startTestServer({ limits: { idleTimeoutMs: 1_500, bareLfEndWaitMs: 300 } });
    const c = await RawClient.connect(server.port);
    await greet(c);
    // A first message whose last line before the real end is a bare-LF dot line: 250.
    expect(await sendMail(c, "b@company.com", "Subject: one\r\n\r\nx\n.\nmore\r\n")).toStartWith("250 2.0.0");
    await c.cmd("MAIL FROM:<a@sender.example>");
    await c.cmd("RCPT TO:<b@company.com>");
    expect(await c.cmd("DATA")).toStartWith("354");
    c.write("Subject: two\r\n\r\nhalf a mess");
    expect(await c.reply(5_000)).toBe("421 4.4.2 mx.test Timeout - closing connection");
    expect(server.sink.messages).toHaveLength(1);
  });
});
