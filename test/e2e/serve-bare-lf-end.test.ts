/**
 * A client that ends DATA with a bare-LF dot line (`printf '…\n.\n'`, a broken appliance),
 * against the real `mailgw serve` over raw sockets. Postfix 3.7 took such a message (250);
 * mailgw, as Postfix 3.9's default, waits for CRLF.CRLF (SMTP smuggling). It used to wait the
 * 120 s idle timeout and answer a bare `421 … Timeout`, so the client retried the same way and
 * nobody saw why. Now, after BARE_LF_END_WAIT_MS (10 s) of silence there, the 421 and the
 * session log line say what happened; nothing is stored. The smuggling defence is unchanged:
 * `\n.\n` followed by more data is still inside the one message, also after a pause shorter
 * than the wait.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { RawClient, greet } from "../smtp/helpers.ts";
import { archivedCopy, serveEachTest, until, type ServeProcess } from "../smtp/serve-process.ts";
import { BARE_LF_END_WAIT_MS } from "../../src/smtp/limits.ts";

const serve = serveEachTest();

const REPLY = '421 4.4.2 mx.test Timeout waiting for <CR><LF>.<CR><LF>: the data ends with a "." line ending in bare <LF>, which does not end a message - closing connection';

/** A session whose commands end in bare LF, as the script's, up to the 354. */
async function openData(s: ServeProcess, from: string): Promise<RawClient> {
  const c = await RawClient.connect(s.smtpPort);
  expect(await c.reply()).toStartWith("220");
  c.write(`EHLO script\nMAIL FROM:<${from}>\nRCPT TO:<b@company.com>\nDATA\n`);
  for (const expected of ["250-", "250 2.1.0", "250 2.1.5", "354 "]) expect(await c.reply()).toStartWith(expected);
  return c;
}

function archived(s: ServeProcess): string[] {
  const root = join(s.dir, "data", "archive");
  try {
    return readdirSync(root, { recursive: true }).map(String).filter((f) => f.endsWith(".eml"));
  } catch {
    return [];
  }
}

describe("mailgw serve and a client that ends DATA with a bare-LF dot line", () => {
  test("\\n.\\n, \\r\\n.\\n, x\\n.\\r\\n, and .\\n as the whole data: a 421 naming the cause after the short wait, the session line says it, nothing stored", async () => {
    const s = await serve();
    const endings: [string, string][] = [
      ["lf@sender.example", "Subject: lf\n\nx\n.\n"],
      ["crlf-lf@sender.example", "Subject: crlf\r\n\r\nx\r\n.\n"],
      ["lf-crlf@sender.example", "Subject: mixed\n\nx\n.\r\n"],
      ["empty@sender.example", ".\n"],
    ];
    const started = Date.now();
    const replies = await Promise.all(
      endings.map(async ([from, data]) => {
        const c = await openData(s, from);
        // The final `\n` in its own write: the tail is read across chunks.
        c.write(data.slice(0, -1));
        await Bun.sleep(50);
        c.write(data.slice(-1));
        const reply = await c.reply(BARE_LF_END_WAIT_MS + 10_000);
        expect(await c.waitClose(5_000)).toBe(true);
        return reply;
      }),
    );
    const waited = Date.now() - started;
    expect(replies).toEqual(endings.map(() => REPLY));
    // The short wait, not the 120 s idle timeout.
    expect(waited).toBeGreaterThanOrEqual(BARE_LF_END_WAIT_MS - 500);
    expect(waited).toBeLessThan(BARE_LF_END_WAIT_MS + 10_000);
    for (const [from] of endings) {
      const line = await s.waitForLog((l) => l.msg === "smtp session" && l.from === from);
      expect(line.reply).toBe(REPLY);
      expect(String(line.error)).toContain("bare-LF dot line");
      expect(line.id).toBeUndefined();
    }
    expect(archived(s)).toEqual([]);
    expect(await s.stop()).toBe(0);
  }, 60_000);

  test("the smuggling defence holds: \\n.\\n then more data (at once, or after a pause shorter than the wait) stays in one message; a stuffed ..\\n line is no end", async () => {
    const s = await serve();
    const smuggled = "MAIL FROM:<admin@company.com>\r\nRCPT TO:<victim@company.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n";
    const ids: string[] = [];
    for (const pauseMs of [0, 2_000]) {
      const c = await openData(s, `pause${pauseMs}@sender.example`);
      c.write("Subject: first\r\n\r\nbody\n.\n");
      if (pauseMs) await Bun.sleep(pauseMs);
      c.write(`${smuggled}.\r\n`);
      const reply = await c.reply();
      const id = /^250 2\.0\.0 Queued as (\S+)$/.exec(reply)?.[1];
      expect(id, reply).toBeString();
      ids.push(id!);
      expect(await c.cmd("QUIT")).toStartWith("221");
    }
    // A dot-stuffed line (`..`) followed by a pause is content, not a bare-LF end: no 421.
    const stuffed = await openData(s, "stuffed@sender.example");
    stuffed.write("Subject: stuffed\r\n\r\nbody\n..\n");
    await Bun.sleep(BARE_LF_END_WAIT_MS + 2_000);
    stuffed.write("more\r\n.\r\n");
    // A 421 during the pause would be the first reply.
    expect(await stuffed.reply()).toStartWith("250 2.0.0 Queued as ");
    for (const id of ids) {
      await until(`${id} archived`, async () => (await archivedCopy(s.dir, id)) !== null, 5_000);
      const text = (await archivedCopy(s.dir, id))!.toString("latin1");
      expect(text).toContain("Subject: first");
      expect(text).toContain("Subject: smuggled");
    }
    expect(archived(s)).toHaveLength(3);
    expect(await s.stop()).toBe(0);
  }, 60_000);
});
