/**
 * The session log line names a refused recipient as the client wrote it, and a UTF-8 address
 * (RFC 6531) in UTF-8: `josé@other.example`, not the `josÃ©@other.example` that reading the
 * command as latin1 gave, which a grep for the address never finds. Bytes that are not UTF-8
 * (refused 500 5.5.2) are kept one character per byte.
 */
import { afterEach, expect, test } from "bun:test";
import { RawClient, greet, startTestServer, type TestServer } from "./helpers.ts";

let server: TestServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
}, 60_000);

async function refusedOfSession(t: TestServer): Promise<unknown> {
  const deadline = Date.now() + 2000;
  while (t.sessions.length === 0 && Date.now() < deadline) await Bun.sleep(20);
  return t.logs.lines.find((l) => l.msg === "smtp session")?.fields.refused;
}

test("refused UTF-8 recipients are logged in UTF-8, with and without SMTPUTF8 declared", async () => {
  server = await startTestServer({ domains: ["company.com", "例子.广告"] });
  const c = await RawClient.connect(server.port);
  await greet(c);
  expect(await c.cmd("MAIL FROM:<a@sender.example>")).toStartWith("250");
  expect(await c.cmd("RCPT TO:<josé@company.com>")).toStartWith("553 5.6.7");
  expect(await c.cmd("RSET")).toStartWith("250");
  expect(await c.cmd("MAIL FROM:<用户@例子.广告> SMTPUTF8")).toStartWith("250");
  expect(await c.cmd("RCPT TO:<ärger@other.example>")).toStartWith("550 5.7.1");
  expect(await c.cmd("RCPT TO:<用户@例子.广告>")).toStartWith("250");
  c.write(Buffer.from("RCPT TO:<j\xe9@company.com>\r\n", "latin1"));
  expect(await c.reply()).toStartWith("500 5.5.2");
  expect(await c.cmd("QUIT")).toStartWith("221");
  expect(await refusedOfSession(server)).toEqual(["josé@company.com (553)", "ärger@other.example (550)", "j\xe9@company.com (500)"]);
});
