/**
 * /healthz and `mailgw healthcheck` (compiled) when the database file is deleted under a
 * running gateway (an `rm -rf data/*.db*` by mistake, a restore done without stopping it).
 * The open handle keeps answering, so a query alone says "ok" while every commit goes to an
 * unlinked inode: after a restart the accepted messages have no rows and are set aside as
 * never acknowledged. Health must say 503 and name the database, and the intake must answer
 * 451 instead of 250 (nothing stored), from source and as the binary.
 */
import { afterAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { runBinary } from "../packaging/binary.ts";
import { greet, RawClient, sendMail } from "../smtp/helpers.ts";
import { cleanupBinary, serveCommand, serveDir, startServe } from "../smtp/serve-process.ts";

afterAll(cleanupBinary, 60_000);

test("database file removed while serve runs → /healthz 503 and healthcheck exits 1 naming the database", async () => {
  const dir = serveDir();
  const serve = await startServe("binary", dir);
  try {
    const port = new URL(serve.httpUrl).port;
    const env = { HTTP_HOST: "127.0.0.1", HTTP_PORT: port };
    const bin = serveCommand("binary")[0] ?? "";
    expect((await runBinary(bin, ["healthcheck"], { cwd: dir, env })).exitCode).toBe(0);

    for (const suffix of ["", "-wal", "-shm"]) rmSync(join(dir, "data", `mail-gateway.db${suffix}`), { force: true });
    const res = await fetch(new URL("/healthz", serve.httpUrl));
    expect(res.status).toBe(503);
    const body = (await res.json()) as { reason: string; checks: { database: { ok: boolean } } };
    expect(body.checks.database.ok).toBe(false);
    expect(body.reason).toBe("database: database file is gone (ENOENT)");
    expect(JSON.stringify(body)).not.toContain(dir); // no paths to unauthenticated clients

    const check = await runBinary(bin, ["healthcheck"], { cwd: dir, env });
    expect(check.exitCode).toBe(1);
    expect(check.stderr).toBe(`mailgw: unhealthy: database: database file is gone (ENOENT) (http://127.0.0.1:${port}/healthz)\n`);
    await serve.waitForLog((l) => l.msg === "health check failing" && JSON.stringify(l.reasons).includes("mail-gateway.db"));
    await expectRefusedAfterDeletion(serve.smtpPort, serve);
  } finally {
    expect(await serve.stop()).toBe(0);
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);

/** The next message gets 451 (its rows would go to the deleted file) and the log says why. */
async function expectRefusedAfterDeletion(port: number, serve: Awaited<ReturnType<typeof startServe>>): Promise<void> {
  const c = await RawClient.connect(port);
  try {
    await greet(c);
    expect(await sendMail(c)).toStartWith("451 4.3.0");
  } finally {
    c.end();
  }
  const line = await serve.waitForLog((l) => l.msg === "storing message failed, answered 451");
  expect(String(line.error)).toContain("/data/mail-gateway.db was deleted since mailgw opened it: restart mailgw");
}

test("database file removed while serve (from source) runs: the next message gets 451, not 250", async () => {
  const dir = serveDir();
  const serve = await startServe("source", dir);
  try {
    const before = await RawClient.connect(serve.smtpPort);
    await greet(before);
    expect(await sendMail(before)).toStartWith("250 2.0.0");
    before.end();
    for (const suffix of ["", "-wal", "-shm"]) rmSync(join(dir, "data", `mail-gateway.db${suffix}`), { force: true });
    await expectRefusedAfterDeletion(serve.smtpPort, serve);
  } finally {
    expect(await serve.stop()).toBe(0);
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
