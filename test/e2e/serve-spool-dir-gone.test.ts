/**
 * The spool directory removed under a running gateway (an `rm -rf data/spool` while cleaning up
 * orphans, a restore done without stopping it). Every message is written there first, so every
 * one is answered 451 (nothing stored, nothing lost): /healthz must say so, with 503 and the
 * detail in the log, not "ok" because DATA_DIR itself still takes a write. A restart recreates
 * the directory and mail is accepted again. The compiled serve.
 */
import { afterAll, expect, test } from "bun:test";
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { greet, RawClient, sendMail } from "../smtp/helpers.ts";
import { cleanupBinary, serveDir, startServe } from "../smtp/serve-process.ts";

afterAll(cleanupBinary, 60_000);

async function send(port: number): Promise<string> {
  const c = await RawClient.connect(port);
  try {
    await greet(c);
    return await sendMail(c);
  } finally {
    c.end();
  }
}

test("spool dir removed while serve runs: 451 for each message, /healthz 503 naming the data dir; a restart recreates it", async () => {
  const dir = serveDir();
  const serve = await startServe("binary", dir);
  try {
    expect(await send(serve.smtpPort)).toStartWith("250 2.0.0");
    rmSync(join(dir, "data", "spool"), { recursive: true, force: true });
    expect(await send(serve.smtpPort)).toStartWith("451 4.3.0");

    const res = await fetch(new URL("/healthz", serve.httpUrl));
    expect(res.status).toBe(503);
    const body = (await res.json()) as { reason: string; checks: { dataDir: { ok: boolean } } };
    expect(body.checks.dataDir.ok).toBe(false);
    expect(body.reason).toBe("dataDir: data dir is not writable (ENOENT)");
    const failing = await serve.waitForLog((l) => l.msg === "health check failing");
    expect(JSON.stringify(failing.reasons)).toContain(join(dir, "data", "spool"));
    // The probe leaves nothing in DATA_DIR.
    expect(readdirSync(join(dir, "data")).filter((n) => n.includes("healthz"))).toEqual([]);
  } finally {
    expect(await serve.stop()).toBe(0);
  }
  const again = await startServe("binary", dir);
  try {
    expect(await send(again.smtpPort)).toStartWith("250 2.0.0");
    expect((await fetch(new URL("/healthz", again.httpUrl))).status).toBe(200);
  } finally {
    expect(await again.stop()).toBe(0);
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
