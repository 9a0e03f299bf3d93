/**
 * `tls` per message against the real `mailgw serve`: a session that sends a message in plain
 * text and then starts TLS for the next one. The session line's `tls` is true (the session ended
 * under TLS), so each listed message says for itself how it came, as its database row and its
 * rule decision (`tls` equals true) already did.
 */
import { expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { join } from "node:path";
import { RawClient, greet, makeCert, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { serveDir, serveEachTest } from "../smtp/serve-process.ts";

const serve = serveEachTest();

const RULES = `domains: [company.com]
default: { action: archive, category: plain }
rules:
  - name: over-tls
    category: tls
    action: archive
    conditions:
      - { field: tls, operator: equals, value: true }
`;

test("a message before STARTTLS is logged tls:false in a session line that says tls:true", async () => {
  const dir = serveDir();
  const { key, cert } = makeCert(dir);
  const s = await serve({ SMTP_TLS_KEY: key, SMTP_TLS_CERT: cert }, RULES);
  const c = await RawClient.connect(s.smtpPort);
  await greet(c);
  const plain = /Queued as (\S+)/.exec(await sendMail(c, "b@company.com", simpleMessage("before STARTTLS")))?.[1];
  expect(await c.cmd("STARTTLS")).toMatch(/^220 /);
  await c.upgrade();
  expect(await c.cmd("EHLO client.example")).toStartWith("250");
  const secured = /Queued as (\S+)/.exec(await sendMail(c, "b@company.com", simpleMessage("after STARTTLS")))?.[1];
  expect(await c.cmd("QUIT")).toStartWith("221");

  const line = await s.waitForLog((l) => l.msg === "smtp session" && Array.isArray(l.messages));
  expect(line.tls).toBe(true);
  const listed = line.messages as Record<string, unknown>[];
  expect(listed.map((m) => [m.id, m.tls, m.category])).toEqual([
    [plain, false, "plain"],
    [secured, true, "tls"],
  ]);
  expect(await s.stop()).toBe(0);
  const db = new Database(join(s.dir, "data", "mail-gateway.db"), { readonly: true });
  const rows = db.query<{ id: string; tls: number }, []>("SELECT id, tls FROM messages ORDER BY id").all();
  db.close();
  expect(Object.fromEntries(rows.map((r) => [r.id, r.tls]))).toEqual({ [plain ?? "?"]: 0, [secured ?? "?"]: 1 });
}, 30_000);
