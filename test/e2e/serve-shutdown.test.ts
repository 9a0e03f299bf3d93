/**
 * Graceful stop of the real `mailgw serve` (from source): on SIGTERM an idle session gets
 * 421 at once, new connections are refused, a session in the middle of DATA finishes and gets
 * its 250 (the message is archived), and the process exits 0. SIGINT also exits 0.
 */
import { describe, expect, test } from "bun:test";
import { connect } from "node:net";
import { RawClient, greet, sendMail } from "../smtp/helpers.ts";
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
  test("SIGTERM: idle → 421, new → refused, DATA in flight → 250 and archived, exit 0", async () => {
    const serve = await startServe("source", serveDir());
    const idle = await RawClient.connect(serve.smtpPort);
    await greet(idle);
    const busy = await RawClient.connect(serve.smtpPort);
    await greet(busy);
    await busy.cmd("MAIL FROM:<a@sender.example>");
    await busy.cmd("RCPT TO:<b@company.com>");
    expect(await busy.cmd("DATA")).toStartWith("354");
    busy.write("Subject: in flight\r\n\r\nfirst half\r\n");

    serve.proc.kill("SIGTERM");
    expect(await idle.reply(3000)).toMatch(/^421 /);
    expect(await refused(serve.smtpPort)).toBe(true);
    await Bun.sleep(300);
    busy.write("second half\r\n.\r\n");
    const reply = await busy.reply(5000);
    expect(reply).toMatch(/^250 2\.0\.0 Queued as \S+/);
    expect(await busy.cmd("MAIL FROM:<a@sender.example>")).toMatch(/^421 /);
    expect(await serve.proc.exited).toBe(0);
    expect(serve.logs.some((l) => l.msg === "smtp session" && reply.endsWith(String(l.id)))).toBe(true);
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
