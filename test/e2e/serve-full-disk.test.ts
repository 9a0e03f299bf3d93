/**
 * Full disk at the SMTP level (issue 3): the real `mailgw serve` with DATA_DIR on a 1 MB
 * tmpfs. Messages that do not fit get 451 4.3.0 (never 250), the session and the server go
 * on, and every message that did get 250 is archived intact. Needs root (mount); skips with
 * a printed reason otherwise.
 */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { RawClient, greet, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { withTmpfs } from "../helpers/tmpfs.ts";
import { serveDir, startServe } from "../smtp/serve-process.ts";

function archived(dataDir: string): Map<string, string> {
  const out = new Map<string, string>();
  const root = join(dataDir, "archive");
  for (const day of readdirSync(root, { withFileTypes: true }).filter((d) => d.isDirectory())) {
    for (const f of readdirSync(join(root, day.name))) if (f.endsWith(".eml")) out.set(f.slice(0, -4), join(root, day.name, f));
  }
  return out;
}

test("DATA_DIR full: 451 4.3.0 for what does not fit, session and server go on, every 250 archived", () =>
  withTmpfs("mailgw-full-", 1, async (mnt) => {
    const dir = serveDir();
    // The database stays off the tiny file system: this test is about the spool filling up.
    const serve = await startServe("source", dir, { DATA_DIR: mnt, DATABASE_URL: `file:${join(dir, "db", "mail-gateway.db")}` });
    try {
      const c = await RawClient.connect(serve.smtpPort);
      await greet(c);
      const body = `${"x".repeat(76)}\r\n`.repeat(5000); // ~390 KB
      const replies: string[] = [];
      const acked = new Map<string, string>();
      for (let i = 0; i < 5; i++) {
        const subject = `big-${i}`;
        const reply = await sendMail(c, "b@company.com", simpleMessage(subject, body));
        replies.push(reply);
        const id = /^250 2\.0\.0 Queued as (\S+)/.exec(reply)?.[1];
        if (id) acked.set(id, subject);
      }
      console.log(`full-disk replies: ${replies.map((r) => r.slice(0, 9)).join(" | ")}`);
      expect(replies.every((r) => /^250 2\.0\.0 /.test(r) || /^451 4\.3\.0 /.test(r))).toBe(true);
      expect(replies.filter((r) => r.startsWith("451")).length).toBeGreaterThan(0);
      expect(acked.size).toBeGreaterThan(0);

      // The same session goes on, and the server still greets new clients.
      expect(await c.cmd("NOOP")).toMatch(/^250/);
      const other = await RawClient.connect(serve.smtpPort);
      expect(await greet(other)).toMatch(/^250/);
      other.end();
      c.end();

      // Everything that got 250 is archived, whole.
      await Bun.sleep(200);
      const files = archived(mnt);
      for (const [id, subject] of acked) {
        const text = readFileSync(files.get(id) ?? "/nonexistent-archive-file", "utf8");
        expect(text.includes(`Subject: ${subject}\r\n`) && text.endsWith(body)).toBe(true);
      }
    } finally {
      expect(await serve.stop("SIGTERM")).toBe(0);
    }
  }));
