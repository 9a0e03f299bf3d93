/**
 * Abuse of the SMTP listener as an MX on the internet sees it, against the real `mailgw serve`
 * (from source), with client addresses claimed through the PROXY protocol (trusted loopback):
 * - one client address holding idle connections cannot take every connection slot: past
 *   MAX_CONNECTIONS_PER_CLIENT it gets 421, and other clients are still greeted (Postfix's
 *   smtpd_client_connection_count_limit); an IPv6 client is counted by its /64;
 * - a session that only collects errors (a relay or address probe sending thousands of RCPTs)
 *   is closed with 421 after MAX_ERRORS_PER_SESSION of them (Postfix's smtpd_hard_error_limit),
 *   while recipients over the per-message limit (452 4.5.3) and a session that delivers mail
 *   between its errors go on;
 * - the connection limit reached is a warning (at most one a minute, with the refusals since the
 *   last one), not only an info line per refused client: with LOG_LEVEL=warn nothing said so.
 */
import { describe, expect, test } from "bun:test";
import { RawClient, greet, sendMail } from "../smtp/helpers.ts";
import { serveEachTest } from "../smtp/serve-process.ts";
import { MAX_CLIENTS, MAX_CONNECTIONS_PER_CLIENT, MAX_ERRORS_PER_SESSION, MAX_RECIPIENTS } from "../../src/smtp/limits.ts";

const serve = serveEachTest();
const PROXIED = { SMTP_PROXY_PROTOCOL: "true", SMTP_PROXY_TRUSTED: "127.0.0.1/32" };

/** A connection through the "proxy" (loopback) for `client`, with its first reply. */
async function proxied(port: number, client: string): Promise<{ c: RawClient; banner: string }> {
  const family = client.includes(":") ? "TCP6" : "TCP4";
  const to = family === "TCP6" ? "2001:db8:ffff::25" : "198.51.100.25";
  const c = await RawClient.connect(port, "127.0.0.1", `PROXY ${family} ${client} ${to} 51000 25\r\n`);
  return { c, banner: await c.reply(5000) };
}

describe("mailgw serve under connection abuse", () => {
  test("one client address holding idle connections gets 421 past its share; other clients are still served", async () => {
    const s = await serve(PROXIED);
    const open: RawClient[] = [];
    try {
      for (let i = 0; i < MAX_CONNECTIONS_PER_CLIENT; i++) {
        const { c, banner } = await proxied(s.smtpPort, "192.0.2.1");
        expect(banner).toStartWith("220 ");
        open.push(c);
      }
      const over = await proxied(s.smtpPort, "192.0.2.1");
      expect(over.banner).toMatch(/^421 4\.7\.0 mx\.test Too many connections from your address/);
      expect(await over.c.waitClose()).toBe(true);

      // Another sender is greeted and its mail accepted while the hog's connections stay open.
      const other = await proxied(s.smtpPort, "203.0.113.7");
      expect(other.banner).toStartWith("220 ");
      expect(await other.c.cmd("EHLO sender.example")).toStartWith("250");
      expect(await sendMail(other.c)).toMatch(/^250 2\.0\.0 Queued as /);
      other.c.end();

      // IPv6: the addresses of one /64 share the client's connections (one host owns a /64).
      for (let i = 0; i < MAX_CONNECTIONS_PER_CLIENT; i++) {
        const { c, banner } = await proxied(s.smtpPort, `2001:db8:1:2::${(i + 1).toString(16)}`);
        expect(banner).toStartWith("220 ");
        open.push(c);
      }
      expect((await proxied(s.smtpPort, "2001:db8:1:2:ffff::1")).banner).toMatch(/^421 4\.7\.0 /);
      expect((await proxied(s.smtpPort, "2001:db8:1:3::1")).banner).toStartWith("220 ");

      // A slot freed by the client is its own again.
      open.shift()?.end();
      let again = "";
      for (let tries = 0; tries < 50 && !again.startsWith("220"); tries++) {
        const next = await proxied(s.smtpPort, "192.0.2.1");
        again = next.banner;
        open.push(next.c);
        if (!again.startsWith("220")) await Bun.sleep(50);
      }
      expect(again).toStartWith("220 ");

      const refused = await s.waitForLog((l) => l.msg === "smtp session" && l.client === "192.0.2.1" && typeof l.reply === "string" && l.reply.startsWith("421"));
      expect(refused.reply).toMatch(/Too many connections from your address/);
    } finally {
      for (const c of open) c.end();
    }
    expect(await s.stop()).toBe(0);
  }, 60_000);

  test("a session that only collects errors is closed with 421 after the error limit; the log line says so", async () => {
    const s = await serve();
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    expect(await c.cmd("MAIL FROM:<probe@sender.example>")).toStartWith("250");
    // Pipelined, as a probe sends them: every reply after the limit's 421 is never sent.
    c.write(Array.from({ length: 1000 }, (_, i) => `RCPT TO:<u${i}@relay-target.example>\r\n`).join(""));
    const replies: string[] = [];
    for (let i = 0; i < MAX_ERRORS_PER_SESSION; i++) replies.push(await c.reply());
    expect(replies.every((r) => r.startsWith("550 5.7.1 "))).toBe(true);
    expect(await c.reply()).toBe("421 4.7.0 mx.test Error: too many errors, closing connection");
    expect(await c.waitClose()).toBe(true);
    const line = await s.waitForLog((l) => l.msg === "smtp session" && l.from === "probe@sender.example");
    expect(line.reply).toBe("421 4.7.0 mx.test Error: too many errors, closing connection");
    expect(line.refused_count).toBe(MAX_ERRORS_PER_SESSION);
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("recipients over the per-message limit and errors between accepted messages do not close the session", async () => {
    const s = await serve();
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    // A big mailing: the recipients past the limit get 452 4.5.3 and are sent again later.
    expect(await c.cmd("MAIL FROM:<list@sender.example>")).toStartWith("250");
    c.write(Array.from({ length: MAX_RECIPIENTS + MAX_ERRORS_PER_SESSION + 5 }, (_, i) => `RCPT TO:<m${i}@company.com>\r\n`).join(""));
    const replies: string[] = [];
    for (let i = 0; i < MAX_RECIPIENTS + MAX_ERRORS_PER_SESSION + 5; i++) replies.push(await c.reply());
    expect(replies.filter((r) => r.startsWith("452 4.5.3")).length).toBe(MAX_ERRORS_PER_SESSION + 5);
    expect(await c.cmd("DATA")).toStartWith("354");
    expect(await c.cmd("Subject: list\r\n\r\nhi\r\n.")).toMatch(/^250 2\.0\.0 Queued as /);
    // Errors that a delivered message separates are not one run of errors.
    for (let round = 0; round < 2; round++) {
      expect(await c.cmd("MAIL FROM:<list@sender.example>")).toStartWith("250");
      for (let i = 0; i < MAX_ERRORS_PER_SESSION - 1; i++) expect(await c.cmd(`RCPT TO:<x${i}@other.example>`)).toStartWith("550");
      expect(await c.cmd("RCPT TO:<b@company.com>")).toStartWith("250");
      expect(await c.cmd("DATA")).toStartWith("354");
      expect(await c.cmd("Subject: again\r\n\r\nhi\r\n.")).toMatch(/^250 2\.0\.0 Queued as /);
    }
    expect(await c.cmd("QUIT")).toStartWith("221");
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("the connection limit reached is one warning, not silence at LOG_LEVEL=warn", async () => {
    // At the default level (startServe reads the info line "mailgw serve started"); the level
    // of the line is what an admin running LOG_LEVEL=warn sees or not.
    const s = await serve();
    const open: RawClient[] = [];
    try {
      // Loopback clients are exempt from the per-client limit: these fill the whole listener.
      for (let i = 0; i < MAX_CLIENTS; i++) open.push(await RawClient.connect(s.smtpPort));
      for (const c of open.slice(-5)) expect(await c.reply()).toStartWith("220 ");
      const refused = await Promise.all(Array.from({ length: 30 }, () => RawClient.connect(s.smtpPort)));
      for (const c of refused) expect(await c.reply()).toMatch(/^421 4\.7\.0 mx\.test Too many connections/);
      const warning = await s.waitForLog((l) => l.msg === "SMTP connection limit reached: new clients get 421");
      expect(warning.level).toBe("warn");
      expect(warning.max_clients).toBe(MAX_CLIENTS);
      await Bun.sleep(300);
      expect(s.logs.filter((l) => l.msg === warning.msg)).toHaveLength(1);
      for (const c of refused) c.end();
    } finally {
      for (const c of open) c.end();
    }
    expect(await s.stop()).toBe(0);
  }, 60_000);
});
