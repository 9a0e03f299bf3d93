/**
 * What Postfix accepts, serve accepts too (src/smtp/lenient-syntax.ts): sender and recipient
 * addresses smtp-server's strict parser refused with a permanent 501 — so the mail bounced —
 * and `HELO host name`, after which every MAIL got 503. The SPEC §4 refusals stay (found by
 * sending the same commands to mailgw and to a Postfix 3.7).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { hideQuotedSpaces, oneSpaceBetweenWords, parseEnvelopeAddress, restoreQuotedSpaces } from "../../src/smtp/lenient-syntax.ts";
import { RawClient, greet, startTestServer, terminated, simpleMessage, type TestServer } from "./helpers.ts";

let server: TestServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
});

describe("lenient address and HELO syntax", () => {
  test("quoted spaces, carriers' dotted local parts and '_' in a domain: 250, stored with the envelope as sent", async () => {
    server = await startTestServer();
    const c = await RawClient.connect(server.port);
    await greet(c);
    for (const from of ['"john smith"@example.org', "taro..yamada@docomo.ne.jp", "taro.@ezweb.ne.jp", ".taro@example.jp", "bounce@mail_out.example.com"]) {
      expect({ from, reply: await c.cmd(`MAIL FROM:<${from}>`) }).toEqual({ from, reply: "250 2.1.0 Accepted" });
      expect(await c.cmd("RSET")).toStartWith("250");
    }
    expect(await c.cmd('MAIL FROM:<"john smith"@example.org> SIZE=100')).toBe("250 2.1.0 Accepted");
    expect(await c.cmd('RCPT TO:<"sales team"@company.com>')).toStartWith("250");
    expect(await c.cmd("RCPT TO:<john..doe@company.com>")).toStartWith("250");
    expect(await c.cmd("DATA")).toStartWith("354");
    c.write(terminated(simpleMessage()));
    expect(await c.reply()).toStartWith("250 2.0.0");
    expect(server.sink.messages.at(-1)?.envelope).toMatchObject({ mailFrom: '"john smith"@example.org', rcptTo: ['"sales team"@company.com', "john..doe@company.com"] });
    await c.cmd("QUIT");
  });

  test("still refused: routing tricks (SPEC §4), other domains, an address over 254 characters", async () => {
    server = await startTestServer();
    const c = await RawClient.connect(server.port);
    await greet(c);
    expect(await c.cmd(`MAIL FROM:<${"a".repeat(250)}@example.org>`)).toStartWith("501 5.1.7");
    expect(await c.cmd("MAIL FROM:<a@example.org>")).toStartWith("250");
    expect(await c.cmd('RCPT TO:<"v@other.example"@company.com>')).toStartWith("501");
    expect(await c.cmd("RCPT TO:<v@other.example@company.com>")).toStartWith("501");
    expect(await c.cmd('RCPT TO:<"v w"@other.example>')).toStartWith("550 5.7.1");
    for (const trick of ["v%other.example@company.com", "other.example!v@company.com", "v@[192.0.2.1]", "@company.com:v@other.example"]) {
      expect({ trick, reply: await c.cmd(`RCPT TO:<${trick}>`) }).toEqual({ trick, reply: expect.stringMatching(/^550 5\.7\.1 /) });
    }
    expect(await c.cmd(`RCPT TO:<${"r".repeat(250)}@company.com>`)).toStartWith("501");
    await c.cmd("QUIT");
  });

  test("HELO or EHLO with several words: the first is the name, and mail goes through", async () => {
    server = await startTestServer();
    for (const hello of ["HELO office scanner", "EHLO NAS box 2"]) {
      const c = await RawClient.connect(server.port);
      expect(await c.reply()).toStartWith("220");
      expect(await c.cmd(hello)).toStartWith("250");
      expect(await c.cmd("MAIL FROM:<scanner@company.com>")).toStartWith("250");
      expect(await c.cmd("RCPT TO:<b@company.com>")).toStartWith("250");
      expect(await c.cmd("DATA")).toStartWith("354");
      c.write(terminated(simpleMessage()));
      expect(await c.reply()).toStartWith("250 2.0.0");
      await c.cmd("QUIT");
    }
    // Each session's summary is written once its connection has closed.
    for (let i = 0; i < 100 && server.sessions.length < 2; i++) await Bun.sleep(20);
    expect(server.sessions.map((s) => s.helo)).toEqual(["office", "nas"]);
  });

  test("hideQuotedSpaces hides only inside the quotes of the path", () => {
    expect(hideQuotedSpaces("TO:<a@b> NOTIFY=NEVER")).toBeNull();
    expect(hideQuotedSpaces('TO:<"a b"@c> X=1')).not.toContain('"a b"');
    expect(restoreQuotedSpaces(hideQuotedSpaces('TO:<"a \\" b c"@d> X=1') as string)).toBe('TO:<"a \\" b c"@d> X=1');
    // A tab is a control character (not qtextSMTP): left as it is, for smtp-server to refuse.
    expect(hideQuotedSpaces('TO:<"a\tb"@d>')).toBeNull();
    // A client's own private-use character never becomes a space.
    expect(hideQuotedSpaces('TO:<"a b"@d\uE000x>')).toBeNull();
    expect((hideQuotedSpaces('TO:<"a b"@c> X=1') as string).endsWith("@c> X=1")).toBe(true);
  });

  test("a domain is still checked as smtp-server's strict mode does ('_' allowed): the IDNA step would cut it at '/', '?', '#' or a backslash", async () => {
    for (const address of ["v@company.com/evil.example", "v@company.com?x", "v@company.com#evil.example", "v@company.com\\evil.example", "v@company%2ecom", "v@company.com..", "v@.", "v@.company.com", "v@xn--company-.com.", '"a b"@company.com/evil', '"a\tb"@company.com', "v@[1.2.3.4/x]"]) {
      expect({ address, parsed: parseEnvelopeAddress("RCPT TO", address) }).toEqual({ address, parsed: false });
    }
    expect(parseEnvelopeAddress("MAIL FROM", "ceo@company.com/attacker.example")).toBe(false);
    // The 254-character limit counts the domain as sent (A-labels), not as smtp-server decodes it.
    expect(parseEnvelopeAddress("MAIL FROM", `v@${"xn--ls8h.".repeat(60)}example`)).toBe(false);
    expect(parseEnvelopeAddress("MAIL FROM", `v@${"xn--ls8h.".repeat(20)}example`)).not.toBe(false);
    for (const address of ["v@company.com", "v@mail_out.company.com", '"a b"@company.com', "taro..yamada@company.com", "v@[192.0.2.1]", "v@[IPv6:2001:db8::1]", "v@company.com."]) {
      expect({ address, parsed: parseEnvelopeAddress("RCPT TO", address) }).toEqual({ address, parsed: address });
    }
    server = await startTestServer();
    const c = await RawClient.connect(server.port);
    await greet(c);
    expect(await c.cmd("MAIL FROM:<ceo@company.com/attacker.example>")).toStartWith("501");
    expect(await c.cmd("MAIL FROM:<a@example.org>")).toStartWith("250");
    for (const rcpt of ["v@company.com/evil.example", "v@company%2ecom", '"a\tb"@company.com']) {
      expect({ rcpt, reply: await c.cmd(`RCPT TO:<${rcpt}>`) }).toEqual({ rcpt, reply: expect.stringMatching(/^501 /) });
    }
    await c.cmd("QUIT");
  });

  test("oneSpaceBetweenWords: only the whitespace between the words; the rest keeps its bytes", () => {
    const one = (line: string): string => oneSpaceBetweenWords(Buffer.from(line, "utf8")).toString("utf8");
    expect(one("MAIL  FROM:<a@b>")).toBe("MAIL FROM:<a@b>");
    expect(one("rcpt\t to \t:<\"x  y\"@b>  NOTIFY=NEVER")).toBe("rcpt to:<\"x  y\"@b>  NOTIFY=NEVER");
    expect(one("RCPT TO:<jörg@b>")).toBe("RCPT TO:<jörg@b>");
    expect(one("HELO\tname")).toBe("HELO name");
    expect(one("NOOP   a  b")).toBe("NOOP a  b");
    // Left as they are: one space already, no verb first (Postfix takes a leading space; nobody sends one).
    for (const line of ["MAIL FROM:<a@b>", " RCPT TO:<a@b>", "QUIT", ""]) expect(one(line)).toBe(line);
  });
});
