/**
 * The gateway's own refusals are reported by reason (onRefusal → `refused:<reason>` counters,
 * mailgw_smtp_refusals_total): each provoked for real on an in-process listener, with the reply
 * the client got. A rule's reject is not one of them (it is the `reject` action).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { refusalReason, refusalReasonOfLine } from "../../src/smtp/refusals.ts";
import { RawClient, greet, makeCert, simpleMessage, startTestServer, tempDir, type TestServer } from "./helpers.ts";

let server: TestServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
}, 60_000);

async function session(port: number): Promise<RawClient> {
  const c = await RawClient.connect(port);
  await greet(c);
  return c;
}

describe("refusals by reason", () => {
  test("relaying, routing tricks, too many recipients, too big (at MAIL and after DATA), a loop; a plain 5xx is none", async () => {
    server = await startTestServer({ env: { MAX_MESSAGE_SIZE_MB: "0.002" }, limits: { maxRecipients: 2, maxReceivedHeaders: 2 } });
    const c = await session(server.port);
    expect(await c.cmd("MAIL FROM:<a@sender.example>")).toStartWith("250");
    expect(await c.cmd("RCPT TO:<v@other.example>")).toStartWith("550 5.7.1 Relaying denied");
    expect(await c.cmd("RCPT TO:<v%other.example@company.com>")).toStartWith("550 5.7.1 Relaying denied");
    expect(await c.cmd("RCPT TO:<a@company.com>")).toStartWith("250");
    expect(await c.cmd("RCPT TO:<b@company.com>")).toStartWith("250");
    expect(await c.cmd("RCPT TO:<c@company.com>")).toStartWith("452 4.5.3");
    expect(await c.cmd("RSET")).toStartWith("250");
    expect(await c.cmd("MAIL FROM:<a@sender.example> SIZE=900000")).toStartWith("552 5.3.4");
    expect(await c.cmd("MAIL FROM:<a@sender.example>")).toStartWith("250");
    expect(await c.cmd("RCPT TO:<a@company.com>")).toStartWith("250");
    expect(await c.cmd("DATA")).toStartWith("354");
    expect(await c.cmd(`${simpleMessage("big", "x".repeat(3000) + "\r\n")}.`)).toStartWith("552 5.3.4");
    expect(await c.cmd("MAIL FROM:<a@sender.example>")).toStartWith("250");
    expect(await c.cmd("RCPT TO:<a@company.com>")).toStartWith("250");
    expect(await c.cmd("DATA")).toStartWith("354");
    const hops = "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n".repeat(3);
    expect(await c.cmd(`${hops}${simpleMessage("loop")}.`)).toStartWith("554 5.4.6");
    expect(await c.cmd("VRFY someone")).toMatch(/^25[02]/);
    expect(await c.cmd("MAIL FROM:<a@sender.example> BODY=9BIT")).toMatch(/^5/); // a syntax error is not counted
    await c.cmd("QUIT");
    await Bun.sleep(50);
    expect(server.refusals).toEqual(["relay_denied", "relay_denied", "too_many_recipients", "too_big", "too_big", "mail_loop"]);
  });

  test("the rate limit, and a session ended for too many errors", async () => {
    server = await startTestServer({ env: { RATE_LIMIT_MAX: "1" }, limits: { maxErrors: 3 } });
    const c = await session(server.port);
    expect(await c.cmd("MAIL FROM:<a@sender.example>")).toStartWith("250");
    expect(await c.cmd("RSET")).toStartWith("250");
    expect(await c.cmd("MAIL FROM:<a@sender.example>")).toStartWith("451 4.7.1");
    expect(await c.cmd("MAIL FROM:<a@sender.example>")).toStartWith("451 4.7.1");
    expect(await c.cmd("MAIL FROM:<a@sender.example>")).toStartWith("451 4.7.1");
    expect(await c.reply()).toContain("too many errors"); // the third error ends the session
    await Bun.sleep(50);
    expect(server.refusals).toEqual(["rate_limited", "rate_limited", "rate_limited", "too_many_errors"]);
  });

  test("STARTTLS required: each command refused before it counts", async () => {
    const cert = makeCert(tempDir());
    server = await startTestServer({ env: { SMTP_TLS_KEY: cert.key, SMTP_TLS_CERT: cert.cert, SMTP_TLS_REQUIRED: "true" } });
    const c = await session(server.port);
    expect(await c.cmd("MAIL FROM:<a@sender.example>")).toStartWith("530 5.7.0");
    expect(await c.cmd("RCPT TO:<a@company.com>")).toStartWith("530 5.7.0");
    await c.cmd("QUIT");
    await Bun.sleep(50);
    expect(server.refusals).toEqual(["tls_required", "tls_required"]);
  });

  test("a declared size the disk has no room for: 452 4.3.1 at MAIL, after 552 for one over the limit, before the rate limit; no SIZE= is never refused", async () => {
    const asked: number[] = [];
    server = await startTestServer({ env: { RATE_LIMIT_MAX: "1" }, roomFor: (bytes) => (asked.push(bytes), bytes <= 5000) });
    const c = await session(server.port);
    expect(await c.cmd("MAIL FROM:<a@sender.example> SIZE=99999999999")).toStartWith("552 5.3.4");
    expect(await c.cmd("MAIL FROM:<a@sender.example> SIZE=6000")).toBe("452 4.3.1 Insufficient system storage");
    expect(await c.cmd("MAIL FROM:<a@sender.example> size=6000")).toBe("452 4.3.1 Insufficient system storage");
    // The refusals did not use up the sender's one message of the rate limit.
    expect(await c.cmd("MAIL FROM:<a@sender.example> SIZE=5000")).toStartWith("250");
    expect(await c.cmd("RSET")).toStartWith("250");
    expect(await c.cmd("MAIL FROM:<a@sender.example>")).toStartWith("451 4.7.1"); // no SIZE=: the rate limit, not the disk
    await c.cmd("QUIT");
    await Bun.sleep(50);
    expect(asked).toEqual([6000, 6000, 5000]);
    expect(server.refusals).toEqual(["too_big", "insufficient_storage", "insufficient_storage", "rate_limited"]);
  });

  test("a client outside SMTP_ALLOWED_IPS is refused at connect", async () => {
    server = await startTestServer({ env: { SMTP_ALLOWED_IPS: "192.0.2.0/24" } });
    const c = await RawClient.connect(server.port);
    expect(await c.reply()).toStartWith("554 5.7.1");
    await Bun.sleep(50);
    expect(server.refusals).toEqual(["not_allowed"]);
  });

  test("the reply texts of the refusals not provoked above map to their reasons", () => {
    expect(refusalReasonOfLine("421 4.7.0 mx.test Too many connections, try again later")).toBe("too_many_connections");
    expect(refusalReasonOfLine("421 4.7.0 mx.test Too many connections from your address, try again later")).toBe("too_many_connections");
    expect(refusalReason(421, "4.4.2 Error: too many unrecognized commands")).toBe("too_many_errors");
    // A rule's reject, a storage failure, a timeout: not the gateway refusing the client.
    expect(refusalReason(550, "5.7.1 Message rejected as spam")).toBeNull();
    expect(refusalReason(451, "4.3.0 Temporary failure")).toBeNull();
    expect(refusalReason(421, "4.4.2 mx.test Timeout")).toBeNull();
  });
});
