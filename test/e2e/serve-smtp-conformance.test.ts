/**
 * Small SMTP-conformance points a mail admin comparing `mailgw serve` with Postfix notices, each
 * checked against the RFC and a Postfix 3.7 given the same command lines, and held here through
 * the real serve over its socket.
 */
import { describe, expect, test } from "bun:test";
import { RawClient, makeCert, sendMail, tempDir } from "../smtp/helpers.ts";
import { archivedCopy, serveEachTest, until } from "../smtp/serve-process.ts";

const serve = serveEachTest();

/** The `with` keyword of the Received header serve prepended to message `reply` (its `250 … Queued as <id>`). */
async function receivedWith(dir: string, reply: string): Promise<string> {
  const id = /Queued as (\S+)/.exec(reply)?.[1] ?? "";
  let copy: Buffer | null = null;
  await until(`${id} archived`, async () => (copy = await archivedCopy(dir, id)) !== null, 5000);
  const received = /^Received:[^]*?;/m.exec(String(copy))?.[0] ?? "";
  return /\bwith (\S+)/.exec(received)?.[1] ?? received;
}

describe("Received header transmission type (RFC 3848)", () => {
  // Postfix writes `with SMTP` for HELO under TLS; `SMTPS` is no registered type.
  test("HELO after STARTTLS: with SMTP; EHLO after STARTTLS: with ESMTPS; plain HELO: with SMTP", async () => {
    const { key, cert } = makeCert(tempDir());
    const s = await serve({ SMTP_TLS_KEY: key, SMTP_TLS_CERT: cert });
    const types: string[] = [];
    for (const [hello, tls] of [["HELO", true], ["EHLO", true], ["HELO", false]] as const) {
      const c = await RawClient.connect(s.smtpPort);
      expect(await c.reply()).toStartWith("220 ");
      expect(await c.cmd(`${hello} client.example`)).toStartWith("250");
      if (tls) {
        expect(await c.cmd("STARTTLS")).toStartWith("220 ");
        await c.upgrade();
        expect(await c.cmd(`${hello} client.example`)).toStartWith("250");
      }
      types.push(await receivedWith(s.dir, await sendMail(c)));
      c.end();
    }
    expect(types).toEqual(["SMTP", "ESMTPS", "SMTP"]);
  }, 30_000);
});
