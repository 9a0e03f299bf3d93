/**
 * The real `mailgw serve` (from source), over its sockets, for what the reviews of 2026-11-25
 * found and the in-process tests cover only below serve:
 * - a client that leaves mid-DATA: its session line always says so (~40% of them had no error);
 * - a session of more than 100 messages: every `Queued as` id is in some log line (those after
 *   the 100th were in none);
 * - `.env` with `STATS_TOKEN="…" # note`: the quotes went into the token, every request got 401;
 * - `/`, the url the start line names, answered 404: it leads to the stats page.
 */
import { afterAll, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { RawClient, greet, sendMail, sendMany } from "../smtp/helpers.ts";
import { serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";

const dirs: string[] = [];
const serves: ServeProcess[] = [];
afterAll(async () => {
  for (const s of serves) if (s.proc.exitCode === null) s.proc.kill("SIGKILL");
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}, 60_000);

async function start(dotenv: string): Promise<ServeProcess> {
  const dir = serveDir();
  dirs.push(dir);
  writeFileSync(join(dir, ".env"), dotenv);
  const serve = await startServe("source", dir, { RATE_LIMIT_MAX: "1000" });
  serves.push(serve);
  return serve;
}

test("sessions cut mid-DATA are logged as such; a 230-message session logs every id", async () => {
  const serve = await start("");
  try {
    for (let i = 0; i < 10; i++) {
      const c = await RawClient.connect(serve.smtpPort);
      await greet(c, `gone${i}.example`);
      await c.cmd("MAIL FROM:<a@sender.example>");
      await c.cmd("RCPT TO:<b@company.com>");
      expect(await c.cmd("DATA")).toStartWith("354");
      c.write(`Subject: cut\r\n\r\n${"x".repeat(i * 4099)}`);
      c.end();
    }
    for (let i = 0; i < 10; i++) {
      const line = await serve.waitForLog((l) => l.msg === "smtp session" && l.helo === `gone${i}.example`);
      expect([i, line.error]).toEqual([i, "connection closed before the reply to DATA"]);
    }

    const c = await RawClient.connect(serve.smtpPort);
    await greet(c, "batch.example");
    const ids = await sendMany(c, 230);
    await c.cmd("QUIT");
    const last = await serve.waitForLog((l) => l.msg === "smtp session" && l.helo === "batch.example");
    const parts = serve.logs.filter((l) => l.msg === "smtp session messages" && l.session === last.session);
    const logged = [...parts, last].flatMap((l) => (l.messages as { id: string }[]).map((m) => m.id));
    expect(logged).toEqual(ids);
    expect(last.id).toBe(ids[229]);
  } finally {
    expect(await serve.stop()).toBe(0);
  }
}, 60_000);

test('.env STATS_TOKEN="…" # note: the token without its quotes; / leads to the stats page', async () => {
  const serve = await start('STATS_TOKEN="tok-3f9a" # for Prometheus\n');
  const at = (path: string): string => new URL(path, serve.httpUrl).href;
  try {
    const auth = { headers: { authorization: "Bearer tok-3f9a" } };
    expect((await fetch(at("/stats.json"), auth)).status).toBe(200);
    expect((await fetch(at("/stats.json"), { headers: { authorization: 'Bearer "tok-3f9a"' } })).status).toBe(401);
    const root = await fetch(at("/"), { redirect: "manual" });
    expect([root.status, root.headers.get("location")]).toEqual([302, "stats"]);
    const page = await fetch(at("/"), auth);
    expect([page.status, page.url, page.headers.get("content-type")]).toEqual([200, at("/stats"), "text/html; charset=utf-8"]);
  } finally {
    expect(await serve.stop()).toBe(0);
  }
}, 60_000);
