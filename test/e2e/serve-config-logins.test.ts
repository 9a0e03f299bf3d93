/**
 * Settings written as other tools take them, with a login in them: RELAY_SMTP_HOST as an SMTP
 * URL (`smtp://user:password@host:587`, `user:password@host`), DATABASE_URL as another
 * database's URL (`postgres://user:password@…`): refused with the fix named, and the
 * password in no line serve writes, at start (stderr, the journal) nor at a SIGHUP that reads it
 * from .env (the log). SPEC §2: relay credentials are never logged.
 */
import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { runServeOnce, serveDir, startServe } from "../smtp/serve-process.ts";

const PASSWORD = "hunter2-relay-pw";

test("at start: exit 1, one line naming the fix, without the password", async () => {
  const dir = serveDir();
  for (const value of [`smtp://postmaster@mg.example.com:${PASSWORD}@smtp.mailgun.org:587`, `postmaster:${PASSWORD}@smtp.mailgun.org`]) {
    const r = await runServeOnce("source", dir, { RELAY_SMTP_HOST: value });
    expect(r.exitCode).toBe(1);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("RELAY_SMTP_HOST=");
    expect(lines[0]).toContain("…@smtp.mailgun.org");
    expect(lines[0]).toContain("the login in RELAY_SMTP_USER and RELAY_SMTP_PASS");
    expect(r.stderr + r.stdout).not.toContain(PASSWORD);
  }
}, 30_000);

test("DATABASE_URL of another database: exit 1 naming the fix, without its password", async () => {
  const r = await runServeOnce("source", serveDir(), { DATABASE_URL: `postgresql://mailgw:${PASSWORD}@db.internal:5432/mailgw` });
  expect(r.exitCode).toBe(1);
  expect(r.stderr.trim()).toBe("mailgw: DATABASE_URL=postgresql://…@db.internal:5432/mailgw is not a SQLite file URL: expected file:PATH (e.g. file:./data/mail-gateway.db)");
}, 30_000);

test("at a SIGHUP that reads it from .env: refused in the log, without the password", async () => {
  const dir = serveDir();
  writeFileSync(join(dir, ".env"), "RELAY_SMTP_HOST=127.0.0.1\nRELAY_SMTP_PORT=2\nRELAY_SMTP_SECURE=none\n");
  const serve = await startServe("source", dir);
  try {
    writeFileSync(join(dir, ".env"), `RELAY_SMTP_HOST=smtp://u:${PASSWORD}@127.0.0.1:2\nRELAY_SMTP_SECURE=none\n`);
    serve.proc.kill("SIGHUP");
    const refused = await serve.waitForLog((l) => JSON.stringify(l).includes("RELAY_SMTP_HOST=smtp://…@127.0.0.1:2"));
    expect(String(refused.level)).toBe("error");
    expect(JSON.stringify(serve.logs)).not.toContain(PASSWORD);
  } finally {
    expect(await serve.stop()).toBe(0);
    expect(JSON.stringify(serve.logs) + serve.stderr()).not.toContain(PASSWORD);
  }
}, 30_000);
