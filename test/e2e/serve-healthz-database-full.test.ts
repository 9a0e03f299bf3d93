/**
 * The database's file system full while DATA_DIR still has room (DATABASE_URL on its own small
 * volume): every message gets 451 4.3.0 ("committing the rows failed: database or disk is
 * full"), but the database still answers queries, and /healthz said 200 "ok" throughout, so
 * Docker's HEALTHCHECK and monitoring saw a healthy gateway refusing all mail. It must say 503
 * (database) while commits fail, without paths, and 200 again once a write goes through.
 * Needs root (mount); skips with a printed reason otherwise.
 */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { withTmpfs } from "../helpers/tmpfs.ts";
import { RawClient, greet, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { serveDir, startServe } from "../smtp/serve-process.ts";

interface Health {
  status: string;
  reason?: string;
  checks: { database: { ok: boolean; reason?: string } };
}

async function health(url: string): Promise<{ code: number; body: Health }> {
  const res = await fetch(new URL("/healthz", url));
  return { code: res.status, body: (await res.json()) as Health };
}

test("database volume full: /healthz 503 (database) while messages get 451, 200 again once a write goes through", () =>
  withTmpfs("mailgw-dbfull-", 1, async (mnt) => {
    const dir = serveDir();
    const serve = await startServe("source", dir, { DATABASE_URL: `file:${join(mnt, "mail-gateway.db")}` });
    try {
      const c = await RawClient.connect(serve.smtpPort);
      await greet(c);
      expect(await sendMail(c, "b@company.com", simpleMessage("before"))).toMatch(/^250 /);
      expect((await health(serve.httpUrl)).code).toBe(200);

      spawnSync("dd", ["if=/dev/zero", `of=${join(mnt, "filler")}`, "bs=64k"]);
      let reply = "";
      for (let i = 0; i < 300 && !reply.startsWith("451"); i++) reply = await sendMail(c, "b@company.com", simpleMessage(`full-${i}`, `${"x".repeat(70)}\r\n`.repeat(20)));
      expect(reply).toMatch(/^451 4\.3\.0 /);
      await serve.waitForLog((l) => String(l.error).includes("database or disk is full"));

      const failing = await health(serve.httpUrl);
      expect(failing.code).toBe(503);
      expect(failing.body.checks.database.ok).toBe(false);
      expect(failing.body.reason).toContain("database: ");
      expect(JSON.stringify(failing.body)).not.toContain(mnt);

      rmSync(join(mnt, "filler"));
      // Healthy again as soon as a write goes through: a balancer that stops sending to an
      // unhealthy gateway would never deliver the message that cleared it before.
      expect((await health(serve.httpUrl)).code).toBe(200);
      expect(await sendMail(c, "b@company.com", simpleMessage("after"))).toMatch(/^250 /);
      expect((await health(serve.httpUrl)).code).toBe(200);
      c.end();
      // One error line per refused message (with its id), not a second one from the SMTP layer.
      await serve.waitForLog((l) => l.msg === "smtp session");
      const errors = serve.logs.filter((l) => l.level === "error" && String(l.error).includes("database or disk is full"));
      expect(errors.map((l) => l.msg)).toEqual(["storing message failed, answered 451"]);
    } finally {
      expect(await serve.stop("SIGTERM")).toBe(0);
    }
  }), 60_000);
