/**
 * What SMTP clients in the wild do to an MX, against the real `mailgw serve` (from source):
 * - a client that shuts down its sending side (shutdown(SHUT_WR), `nc -N`) right after the
 *   final dot still reads its 250, as from Postfix, also over STARTTLS; the message is archived
 *   once and the session line names it. A shutdown mid-DATA stores nothing and the session ends
 *   at once;
 * - a client that resets the connection right after the final dot: the message it sent is kept
 *   all the same, and the session line waits for it, to name it;
 * - a client that resets the connection once it has read the 221 to its QUIT (Postfix's
 *   smtp-source, SO_LINGER 0): a session that ended as it should, with no error in its line.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { RawClient, greet, makeCert, sendMail, simpleMessage, terminated } from "../smtp/helpers.ts";
import { archivedCopy, RULES_YAML, serveDir, serveEachTest, until } from "../smtp/serve-process.ts";

const serve = serveEachTest();

/** Everything the server sends until it closes the connection (or `ms` passes). */
function rest(c: RawClient, ms = 5000): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    const done = (): void => resolve(text);
    c.socket.on("data", (d: Buffer) => (text += d.toString("latin1")));
    c.socket.once("close", done);
    setTimeout(done, ms);
  });
}

describe("mailgw serve and clients in the wild", () => {
  // The listener closed the socket on the client's FIN: the message was stored, but its 250
  // was never written, so the client would send it again (and the session line had no id).
  test("shutdown(SHUT_WR) after the final dot, plain or after STARTTLS: the 250 (and a pipelined QUIT's 221) still arrive; mid-DATA: nothing kept", async () => {
    const dir = serveDir();
    const { key, cert } = makeCert(dir);
    const s = await serve({ SMTP_TLS_KEY: key, SMTP_TLS_CERT: cert }, RULES_YAML, dir);
    const ids: string[] = [];
    for (const tls of [false, true]) {
      for (const quit of ["", "QUIT\r\n"]) {
        const c = await RawClient.connect(s.smtpPort);
        await greet(c);
        if (tls) {
          expect(await c.cmd("STARTTLS")).toStartWith("220");
          await c.upgrade();
          expect(await c.cmd("EHLO client.example")).toStartWith("250");
        }
        const replies = rest(c);
        c.write(`MAIL FROM:<a@sender.example>\r\nRCPT TO:<b@company.com>\r\nDATA\r\n${terminated(simpleMessage(`half-closed ${tls} ${quit.length}`))}${quit}`);
        c.socket.end();
        const text = await replies;
        const id = /^250 2\.0\.0 Queued as (\S+)\r\n/m.exec(text)?.[1];
        expect(id, `tls: ${tls}: ${text}`).toBeString();
        if (quit) expect(text).toEndWith("221 2.0.0 Bye\r\n");
        expect(c.closed).toBe(true);
        ids.push(id!);
        await until(`${id} archived`, async () => (await archivedCopy(s.dir, id!)) !== null, 5000);
        await s.waitForLog((l) => l.msg === "smtp session" && l.id === id && l.reply === `250 2.0.0 Queued as ${id}`);
      }
    }
    expect(new Set(ids).size).toBe(4);

    const cut = await RawClient.connect(s.smtpPort);
    await greet(cut);
    const replies = rest(cut);
    cut.write(`MAIL FROM:<a@sender.example>\r\nRCPT TO:<b@company.com>\r\nDATA\r\nSubject: cut off\r\n\r\nhalf a message\r\n`);
    cut.socket.end();
    const text = await replies;
    expect(text).toEndWith("354 End data with <CR><LF>.<CR><LF>\r\n");
    expect(cut.closed).toBe(true);
    await s.waitForLog((l) => l.msg === "smtp session" && l.from === "a@sender.example" && l.id === undefined);
    expect(s.logs.filter((l) => l.msg === "smtp session" && l.id !== undefined)).toHaveLength(4);
    expect(readdirSync(join(s.dir, "data", "archive"), { recursive: true }).filter((f) => String(f).endsWith(".eml"))).toHaveLength(4);
    expect(await s.stop()).toBe(0);
  }, 30_000);

  // The line was written at the reset, before the message was stored: no id, no decision, and
  // the id of the archived message appeared in no log line at all.
  test("a reset right after the final dot: the message kept is named in the session line", async () => {
    const s = await serve();
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    c.write(`MAIL FROM:<a@sender.example>\r\nRCPT TO:<b@company.com>\r\nDATA\r\n${terminated(simpleMessage("reset after the dot"))}`);
    c.socket.resetAndDestroy();
    const line = await s.waitForLog((l) => l.msg === "smtp session" && l.from === "a@sender.example");
    expect(line).toMatchObject({ decision: "archive", category: "default" });
    expect(line.id).toBeString();
    expect(await archivedCopy(s.dir, String(line.id))).not.toBeNull();
    expect(line.error).toBeString();
    expect(await s.stop()).toBe(0);
  }, 30_000);

  // Every session of smtp-source's load tests was logged with "error":"ECONNRESET: read ECONNRESET".
  test("a reset after the 221 to QUIT: the session line has no error", async () => {
    const s = await serve();
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    expect(await sendMail(c)).toMatch(/^250 2\.0\.0 Queued as /);
    expect(await c.cmd("QUIT")).toMatch(/^221 /);
    c.socket.resetAndDestroy();
    const line = await s.waitForLog((l) => l.msg === "smtp session" && l.from === "a@sender.example");
    expect(line.reply).toMatch(/^250 2\.0\.0 Queued as /);
    expect(line.error).toBeUndefined();
    expect(await s.stop()).toBe(0);
  }, 30_000);
});
