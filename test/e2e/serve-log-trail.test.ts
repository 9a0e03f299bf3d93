/**
 * What an admin finds in the real `mailgw serve` log when a sender complains, the way one
 * searches Postfix's maillog (`grep from=<erp@…>`):
 * - a MAIL FROM refused by the rate limit or by SMTP_TLS_REQUIRED leaves a session line that
 *   names the refused sender beside the reply, so "mail from our ERP stopped" is found by address;
 * - so does a MAIL FROM refused for the SIZE= it declares (what Postfix and Exim senders do with an
 *   oversized message) or for a parameter or address it may not use;
 * - a session whose last reply is not its message's (a later MAIL refused by the rate limit) lists
 *   the message with its own 250, so the line does not pair the queued id with the 451;
 * - a message refused by a rule is recorded under an id; the session line carries that id, as
 *   the "message rejected" line and the database row do, also when it is the session's only one.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Database } from "bun:sqlite";
import { RawClient, greet, makeCert, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { serveEachTest } from "../smtp/serve-process.ts";

const serve = serveEachTest();

describe("mailgw serve log trail", () => {
  test("a MAIL FROM refused by the rate limit or by SMTP_TLS_REQUIRED: the session line names the sender", async () => {
    const s = await serve({ RATE_LIMIT_MAX: "1" });
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    expect(await sendMail(c)).toMatch(/^250 2\.0\.0 Queued as /);
    c.end();
    const erp = await RawClient.connect(s.smtpPort);
    await greet(erp);
    expect(await erp.cmd("MAIL FROM:<erp@erp.example>")).toMatch(/^451 4\.7\.1 /);
    await erp.cmd("QUIT");
    const limited = await s.waitForLog((l) => l.msg === "smtp session" && String(l.reply).startsWith("451 4.7.1"));
    expect(limited).toMatchObject({ client: "127.0.0.1", from: "erp@erp.example" });
    expect(await s.stop()).toBe(0);

    const certs = makeCert(s.dir);
    const t = await serve({ SMTP_TLS_KEY: certs.key, SMTP_TLS_CERT: certs.cert, SMTP_TLS_REQUIRED: "true" });
    const plain = await RawClient.connect(t.smtpPort);
    await greet(plain);
    expect(await plain.cmd("MAIL FROM:<erp@erp.example>")).toMatch(/^530 5\.7\.0 /);
    await plain.cmd("QUIT");
    const refused = await t.waitForLog((l) => l.msg === "smtp session" && String(l.reply).startsWith("530"));
    expect(refused).toMatchObject({ client: "127.0.0.1", from: "erp@erp.example" });
    expect(await t.stop()).toBe(0);
  }, 60_000);

  test("a MAIL FROM refused for its declared SIZE=, an option not offered or a UTF-8 address: the session line names the sender", async () => {
    const s = await serve({ MAX_MESSAGE_SIZE_MB: "1" });
    const cases: [string, RegExp, string][] = [
      ["MAIL FROM:<big@sender.example> SIZE=99999999", /^552 5\.3\.4 /, "big@sender.example"],
      ["MAIL FROM:<opt@sender.example> RET=HDRS", /^555 5\.5\.4 /, "opt@sender.example"],
      ["MAIL FROM:<jörg@sender.example>", /^553 5\.6\.7 /, "jörg@sender.example"],
    ];
    for (const [command, reply, from] of cases) {
      const c = await RawClient.connect(s.smtpPort);
      await greet(c);
      expect(await c.cmd(command)).toMatch(reply);
      await c.cmd("QUIT");
      const line = await s.waitForLog((l) => l.msg === "smtp session" && reply.test(String(l.reply)));
      expect(line).toMatchObject({ client: "127.0.0.1", from });
    }
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("one message queued, then a MAIL refused by the rate limit: the line lists the message with its own 250", async () => {
    const s = await serve({ RATE_LIMIT_MAX: "1" });
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    const queued = await sendMail(c);
    expect(queued).toMatch(/^250 2\.0\.0 Queued as /);
    expect(await c.cmd("MAIL FROM:<a@sender.example>")).toMatch(/^451 4\.7\.1 /);
    await c.cmd("QUIT");
    const line = await s.waitForLog((l) => l.msg === "smtp session");
    expect(String(line.reply)).toStartWith("451 4.7.1");
    expect(line.messages).toEqual([
      { id: queued.split(" ").pop(), from: "a@sender.example", recipients: ["b@company.com"], size: expect.any(Number), tls: false, decision: "archive", category: "default", reply: queued },
    ]);
    expect(await s.stop()).toBe(0);
  }, 30_000);

  test("a rule reject, the session's only message: the session line carries the id it was recorded under", async () => {
    const s = await serve();
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    expect(await sendMail(c, "b@company.com", simpleMessage("[SPAM] cheap"))).toMatch(/^550 5\.7\.1 /);
    await c.cmd("QUIT");
    const rejected = await s.waitForLog((l) => l.msg === "message rejected");
    const line = await s.waitForLog((l) => l.msg === "smtp session" && l.decision === "reject");
    expect(typeof rejected.id).toBe("string");
    expect(line).toMatchObject({ id: rejected.id, rule: "reject-spam", from: "a@sender.example", recipients: ["b@company.com"] });
    expect(await s.stop()).toBe(0);
    const db = new Database(join(s.dir, "data", "mail-gateway.db"), { readonly: true });
    try {
      expect(db.query<{ action: string }, [string]>("SELECT action FROM messages WHERE id = ?").get(String(rejected.id))).toEqual({ action: "reject" });
    } finally {
      db.close();
    }
  }, 30_000);
});
