/**
 * Envelope addresses at the edges of RFC 5321's syntax, judged as Postfix 3.7 judges them
 * (found by sending the same commands to mailgw serve and to a Postfix MX,
 * test/e2e/serve-postfix-differential.test.ts): the longest valid path is taken, and a local
 * part Postfix refuses as unparseable is refused here too, before a 250 that the relay would
 * contradict.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { parseEnvelopeAddress } from "../../src/smtp/lenient-syntax.ts";
import { RawClient, greet, simpleMessage, startTestServer, terminated, type TestServer } from "./helpers.ts";

let server: TestServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
});

/** An address of exactly `n` characters in `domain`. */
const ofLength = (n: number, domain: string): string => `${"a".repeat(n - 1 - domain.length)}@${domain}`;

describe("envelope address limits", () => {
  test("a 254-character address (RFC 5321's 256-octet path less <>) is taken; 255 is not", async () => {
    server = await startTestServer();
    const c = await RawClient.connect(server.port);
    await greet(c);
    const from = ofLength(254, "sender.example");
    const rcpt = ofLength(254, "company.com");
    expect(await c.cmd(`MAIL FROM:<${ofLength(255, "sender.example")}>`)).toStartWith("501 5.1.7");
    expect(await c.cmd(`MAIL FROM:<${from}>`)).toBe("250 2.1.0 Accepted");
    expect(await c.cmd(`RCPT TO:<${ofLength(255, "company.com")}>`)).toStartWith("501 5.1.3");
    expect(await c.cmd(`RCPT TO:<${rcpt}>`)).toBe("250 2.1.5 Accepted");
    expect(await c.cmd("DATA")).toStartWith("354");
    c.write(terminated(simpleMessage()));
    expect(await c.reply()).toStartWith("250 2.0.0");
    expect(server.sink.messages.at(-1)?.envelope).toMatchObject({ mailFrom: from, rcptTo: [rcpt] });
    await c.cmd("QUIT");
  });
});

describe("local parts Postfix cannot parse", () => {
  // `(` and `\\` Postfix reads as a comment and a quoted pair (a(b)c: 501; a(b, (b)a, a\\b: relayed
  // as another address); a leading `-`, quoted or not, it refuses with 501.
  const refused = ['a"b', '"a', 'a"b"c', '"a"b', '"a\\"', "a,b", "a;b", "a[b", "a[b]", "a\\b", "a(b)", "a(b", "(b)a", "a.(b)", "-a", '"-a"', '"\\-a"', "-"];
  const taken = ['"a"', '"a b"', '"a\\"b"', '""', '"a(b)"', '"a\\\\b"', "a)b", "a:b", "a]b", "a..b", "a-", "a.-b", "o'brien", "a+tag", "#$&'*+-/=?^_`{}|~x"];

  test("a stray quote, ',' ';' '[' '(' backslash outside a quoted local part, a leading '-': 501 at MAIL and RCPT; the rest still 250", async () => {
    server = await startTestServer();
    const c = await RawClient.connect(server.port);
    await greet(c);
    for (const local of refused) {
      expect({ local, reply: await c.cmd(`MAIL FROM:<${local}@sender.example>`) }).toEqual({ local, reply: expect.stringMatching(/^501 5\.1\.7 /) });
    }
    for (const local of taken) {
      expect({ local, reply: await c.cmd(`MAIL FROM:<${local}@sender.example>`) }).toEqual({ local, reply: "250 2.1.0 Accepted" });
      expect(await c.cmd("RSET")).toStartWith("250");
    }
    await c.cmd("QUIT");
    // A new session: twenty refusals end one (MAX_ERRORS_PER_SESSION, as Postfix's hard limit).
    const d = await RawClient.connect(server.port);
    await greet(d);
    expect(await d.cmd("MAIL FROM:<a@sender.example>")).toStartWith("250");
    for (const local of refused) {
      expect({ local, reply: await d.cmd(`RCPT TO:<${local}@company.com>`) }).toEqual({ local, reply: expect.stringMatching(/^501 5\.1\.3 /) });
    }
    for (const local of taken) {
      expect({ local, reply: await d.cmd(`RCPT TO:<${local}@company.com>`) }).toEqual({ local, reply: "250 2.1.5 Accepted" });
    }
    await d.cmd("QUIT");
  });

  test("the dry run (mailgw test --from/--to) refuses the same addresses", () => {
    for (const local of refused) expect({ local, parsed: parseEnvelopeAddress("MAIL FROM", `${local}@sender.example`) }).toEqual({ local, parsed: false });
    for (const local of taken) expect({ local, parsed: parseEnvelopeAddress("RCPT TO", `${local}@company.com`) }).toEqual({ local, parsed: `${local}@company.com` });
  });
});

describe("domains Postfix's valid_hostname() refuses", () => {
  // `xn--company-`: judged as written (smtp-server hands it over decoded, as `company`).
  const refused = ["-s.example", "s.example-", "s-.example", "192.0.2.1", "123.45", `${"b".repeat(64)}.example`, "xn--company-.com"];
  const taken = ["s-x.example", "3com.example", "1a.2b", `${"b".repeat(63)}.example`, "mail_out.example", "localhost", "[192.0.2.1]"];

  test("a label starting or ending with '-', a label over 63 octets, an all-digit domain: 501; the rest 250", async () => {
    server = await startTestServer();
    const c = await RawClient.connect(server.port);
    await greet(c);
    for (const domain of refused) {
      expect({ domain, reply: await c.cmd(`MAIL FROM:<a@${domain}>`) }).toEqual({ domain, reply: expect.stringMatching(/^501 5\.1\.7 /) });
    }
    for (const domain of taken) {
      expect({ domain, reply: await c.cmd(`MAIL FROM:<a@${domain}>`) }).toEqual({ domain, reply: "250 2.1.0 Accepted" });
      expect(await c.cmd("RSET")).toStartWith("250");
    }
    await c.cmd("QUIT");
  });
});
