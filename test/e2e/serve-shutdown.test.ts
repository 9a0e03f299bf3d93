/**
 * Graceful stop of the real `mailgw serve` (from source): on SIGTERM an idle session gets
 * 421 at once, new connections are refused, a session in the middle of DATA, or of a
 * transaction between its commands, finishes and gets its 250 (a new MAIL then gets 421), and
 * the process exits 0; a client stalled mid-DATA is cut
 * off after the grace, leaving no file and no row. SIGINT also exits 0. A client stalled in
 * its STARTTLS handshake is closed and still gets its session line.
 */
import { describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { readdirSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { RawClient, greet, makeCert, sendMail } from "../smtp/helpers.ts";
import { serveDir, startServe } from "../smtp/serve-process.ts";

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host: "127.0.0.1" });
    s.once("error", () => resolve(true));
    s.once("data", (d) => {
      s.destroy();
      resolve(!d.toString().startsWith("220"));
    });
  });
}

describe("mailgw serve graceful stop", () => {
  test("SIGTERM: idle → 421, new → refused, DATA or a transaction in flight → 250 and archived, exit 0", async () => {
    const serve = await startServe("source", serveDir());
    const idle = await RawClient.connect(serve.smtpPort);
    await greet(idle);
    const busy = await RawClient.connect(serve.smtpPort);
    await greet(busy);
    await busy.cmd("MAIL FROM:<a@sender.example>");
    await busy.cmd("RCPT TO:<b@company.com>");
    expect(await busy.cmd("DATA")).toStartWith("354");
    busy.write("Subject: in flight\r\n\r\nfirst half\r\n");
    // A transaction under way, between commands: MAIL and RCPT accepted, DATA not yet sent.
    const midway = await RawClient.connect(serve.smtpPort);
    await greet(midway);
    await midway.cmd("MAIL FROM:<a@sender.example>");
    await midway.cmd("RCPT TO:<c@company.com>");

    serve.proc.kill("SIGTERM");
    expect(await idle.reply(3000)).toMatch(/^421 /);
    expect(await refused(serve.smtpPort)).toBe(true);
    await Bun.sleep(300);
    busy.write("second half\r\n.\r\n");
    const reply = await busy.reply(5000);
    expect(reply).toMatch(/^250 2\.0\.0 Queued as \S+/);
    expect(await busy.cmd("MAIL FROM:<a@sender.example>")).toMatch(/^421 /);
    // The transaction under way is finished too (it was cut at DATA with 421 before).
    expect(await midway.cmd("RCPT TO:<d@company.com>")).toStartWith("250 2.1.5");
    expect(await midway.cmd("DATA")).toStartWith("354");
    expect(await midway.cmd("Subject: midway\r\n\r\nbody\r\n.")).toMatch(/^250 2\.0\.0 Queued as \S+/);
    // A new transaction is not: 421, and the connection closes.
    expect(await midway.cmd("MAIL FROM:<a@sender.example>")).toMatch(/^421 4\.3\.2 /);
    expect(await midway.reply(3000)).toBe("");
    expect(await serve.exited()).toBe(0);
    expect(serve.logs.some((l) => l.msg === "smtp session" && reply.endsWith(String(l.id)))).toBe(true);
  }, 30_000);

  test("SIGTERM with a client stalled mid-DATA: cut off after the grace, nothing stored, no .tmp, exit 0", async () => {
    const serve = await startServe("source", serveDir());
    // Half-open: serve's close after its 421 does not close the client's side (a silent client).
    const stalled = await RawClient.connect(serve.smtpPort, "127.0.0.1", undefined, undefined, true);
    await greet(stalled);
    await stalled.cmd("MAIL FROM:<a@sender.example>");
    await stalled.cmd("RCPT TO:<b@company.com>");
    expect(await stalled.cmd("DATA")).toStartWith("354");
    // Over the 64 KB kept in memory, so the message is already being written to its spool file.
    stalled.write(`Subject: never finished\r\n\r\n${"x".repeat(76)}\r\n`.repeat(1500));
    const spool = join(serve.dir, "data", "spool");
    for (let i = 0; i < 50 && !readdirSync(spool).some((f) => f.endsWith(".tmp")); i++) await Bun.sleep(20);
    expect(readdirSync(spool).some((f) => f.endsWith(".tmp"))).toBe(true);

    const t = Date.now();
    serve.proc.kill("SIGTERM");
    // The session gets the shutdown grace (10 s) to finish its transaction, then the process goes.
    const lastWords = stalled.reply(20_000).catch((err: unknown) => `no reply: ${String(err)}`);
    expect(await serve.exited()).toBe(0);
    expect(await lastWords).toMatch(/^421 4\.3\.2 /); // the sender's MTA knows to retry
    const took = Date.now() - t;
    expect(took).toBeGreaterThan(5_000);
    expect(took).toBeLessThan(20_000);
    // The client kept its side open after the 421: its session still gets its line before the exit.
    expect(serve.logs.filter((l) => l.msg === "smtp session").map((l) => l.helo)).toEqual(["client.example"]);
    expect(readdirSync(spool, { recursive: true })).toEqual(["orphaned"]); // recovery's (empty) folder
    const db = new Database(join(serve.dir, "data", "mail-gateway.db"), { readonly: true });
    expect(db.query<{ n: number }, []>("SELECT count(*) AS n FROM messages").get()?.n).toBe(0);
    db.close();
  }, 40_000);

  test("SIGTERM with a client stalled in its STARTTLS handshake: closed, and its session logged", async () => {
    const dir = serveDir();
    const { key, cert } = makeCert(dir, "tls");
    const serve = await startServe("source", dir, { SMTP_TLS_KEY: key, SMTP_TLS_CERT: cert });
    const stalled = await RawClient.connect(serve.smtpPort);
    await greet(stalled);
    expect(await stalled.cmd("STARTTLS")).toMatch(/^220 /);
    // No ClientHello follows. Closing it mid-handshake (here, or at the idle timeout) fired no
    // close event under Bun: the session never got its line, nor its count.
    expect(await serve.stop("SIGTERM")).toBe(0);
    stalled.end();
    const sessions = serve.logs.filter((l) => l.msg === "smtp session");
    expect(sessions.map((l) => ({ helo: l.helo, tls: l.tls }))).toEqual([{ helo: "client.example", tls: false }]);
  }, 30_000);

  test("SIGTERM right after sessions said QUIT: each still gets its log line and its session count", async () => {
    const dir = serveDir();
    const serve = await startServe("source", dir);
    const SESSIONS = 20;
    const clients = await Promise.all(Array.from({ length: SESSIONS }, async () => {
      const c = await RawClient.connect(serve.smtpPort);
      await greet(c);
      return c;
    }));
    // Their sockets close a moment after the 221: the stop must not outrun that.
    expect(await Promise.all(clients.map((c) => c.cmd("QUIT")))).toEqual(Array(SESSIONS).fill("221 2.0.0 Bye"));
    expect(await serve.stop("SIGTERM")).toBe(0);
    expect(serve.logs.filter((l) => l.msg === "smtp session" && l.helo === "client.example")).toHaveLength(SESSIONS);
    const db = new Database(join(dir, "data", "mail-gateway.db"), { readonly: true });
    try {
      expect(db.query<{ n: number }, []>("SELECT sum(n) AS n FROM daily_counters WHERE metric = 'session'").get()?.n).toBe(SESSIONS);
    } finally {
      db.close();
    }
  }, 30_000);

  test("SIGINT with no sessions exits 0 promptly", async () => {
    const serve = await startServe("source", serveDir());
    const c = await RawClient.connect(serve.smtpPort);
    await greet(c);
    expect(await sendMail(c)).toStartWith("250");
    c.end();
    const t = Date.now();
    expect(await serve.stop("SIGINT")).toBe(0);
    expect(Date.now() - t).toBeLessThan(5000);
  }, 30_000);
});
