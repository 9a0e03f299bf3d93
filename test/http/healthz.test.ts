/**
 * /healthz: 200 when SMTP listens, the database answers and the data dir's spool takes a write; 503
 * naming the failed check otherwise (data dir or its spool removed, data dir replaced by a file, SMTP down, database
 * closed, its file deleted or replaced). A missing relay is only a warning. Health changes are logged with the detail.
 */
import { afterEach, beforeEach, expect, test } from "bun:test";
import { copyFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { HealthReport } from "../../src/http/healthz.ts";
import type { HttpServer } from "../../src/http/server.ts";
import { createLogger } from "../../src/log/logger.ts";
import { get, makeFixture, startServer, type Fixture } from "./fixture.ts";

let fx: Fixture;
let server: HttpServer;
let log: string[];
beforeEach(async () => {
  fx = makeFixture();
  log = [];
  server = await startServer(fx, { logger: createLogger({ level: "info", format: "json", write: (s) => void log.push(s) }) });
}, 60_000);
afterEach(async () => {
  await server.stop();
  fx.cleanup();
}, 60_000);

async function health(): Promise<{ status: number; body: HealthReport }> {
  const res = await get(server, "/healthz");
  return { status: res.status, body: (await res.json()) as HealthReport };
}

test("healthy: 200 with status ok, and the probe leaves nothing behind", async () => {
  const { status, body } = await health();
  expect(status).toBe(200);
  expect(body.status).toBe("ok");
  expect(body.checks).toEqual({ smtp: { ok: true }, database: { ok: true }, dataDir: { ok: true } });
  expect(body.warnings).toEqual([]);
  expect(readdirSync(fx.dataDir).filter((f) => f.startsWith(".healthz"))).toEqual([]);
  expect(readdirSync(join(fx.dataDir, "spool"))).toEqual([]);
});

test("spool dir removed (every message would get 451) → 503 naming it in the log", async () => {
  rmSync(join(fx.dataDir, "spool"), { recursive: true });
  const down = await health();
  expect(down.status).toBe(503);
  expect(down.body.reason).toBe("dataDir: data dir is not writable (ENOENT)");
  expect(log.join("")).toContain(join(fx.dataDir, "spool"));
});

test("data dir removed → 503; restored → 200 again", async () => {
  const aside = `${fx.dataDir}.aside`;
  renameSync(fx.dataDir, aside); // the open database keeps working on its inode
  const down = await health();
  expect(down.status).toBe(503);
  expect(down.body.status).toBe("unhealthy");
  expect(down.body.checks.dataDir.ok).toBe(false);
  expect(down.body.reason).toContain("dataDir: data dir is not writable (ENOENT)");
  expect(JSON.stringify(down.body)).not.toContain(fx.dir); // no paths to unauthenticated clients
  expect(log.join("")).toContain("health check failing");
  expect(log.join("")).toContain(fx.dataDir); // the detail is in the log
  renameSync(aside, fx.dataDir);
  expect((await health()).status).toBe(200);
  expect(log.join("")).toContain("health ok");
});

test("data dir replaced by a file → 503", async () => {
  const aside = `${fx.dataDir}.aside`;
  renameSync(fx.dataDir, aside);
  writeFileSync(fx.dataDir, "not a directory");
  const down = await health();
  expect(down.status).toBe(503);
  expect(down.body.reason).toContain("data dir is not writable (ENOTDIR)");
  rmSync(fx.dataDir);
  renameSync(aside, fx.dataDir);
});

test("SMTP listener down → 503", async () => {
  fx.status.listening = false;
  const { status, body } = await health();
  expect(status).toBe(503);
  expect(body.reason).toBe("smtp: SMTP listener is not accepting connections");
  expect(body.checks.database.ok).toBe(true);
});

test("database unusable → 503", async () => {
  fx.db.close();
  const { status, body } = await health();
  expect(status).toBe(503);
  expect(body.checks.database.ok).toBe(false);
  // Guarded routes answer a generic 500 rather than leaking the error.
  const stats = await get(server, "/stats.json");
  expect(stats.status).toBe(500);
  expect(await stats.text()).toBe("internal error\n");
});

test("database file deleted or replaced under the open handle → 503 (commits would go to an unlinked inode)", async () => {
  const file = join(fx.dataDir, "mail-gateway.db");
  const aside = `${file}.aside`;
  renameSync(file, aside);
  const gone = await health();
  expect(gone.status).toBe(503);
  expect(gone.body.reason).toBe("database: database file is gone (ENOENT)");
  copyFileSync(aside, file); // same path, another inode: a restore done while running
  const replaced = await health();
  expect(replaced.status).toBe(503);
  expect(replaced.body.reason).toBe("database: database file was replaced since start");
  expect(log.join("")).toContain(file); // the path is in the log only
  rmSync(file);
  renameSync(aside, file);
  expect((await health()).status).toBe(200);
});

test("no relay is a warning, not a failure", async () => {
  fx.status.relayConfigured = false;
  const { status, body } = await health();
  expect(status).toBe(200);
  expect(body.warnings.join(" ")).toContain("no relay configured");
  expect((await get(server, "/healthz", { method: "HEAD" })).status).toBe(200);
});

test("STARTTLS certificate: warned under 14 days left, or a third of a short lifetime; 'less than a day' at the end", async () => {
  const DAY = 86_400_000;
  const now = Date.now();
  const tlsWarnings = async (notBefore: number, notAfter: number): Promise<string[]> => {
    fx.status.tlsCertificate = () => ({ notBefore, notAfter, reloadRefused: false });
    const { status, body } = await health();
    expect(status).toBe(200);
    return body.warnings.filter((w) => w.includes("STARTTLS certificate"));
  };
  expect(await tlsWarnings(now - 60 * DAY, now + 30 * DAY)).toEqual([]);
  expect((await tlsWarnings(now - 80 * DAY, now + 10 * DAY + 60_000)).join()).toContain("(in 10 days): check that its renewal works");
  expect((await tlsWarnings(now - 89 * DAY, now + 3_600_000)).join()).toContain("(in less than a day)");
  // A 6-day certificate renewed at half its life is not "expiring" with 3 days left, but is with 1.
  expect(await tlsWarnings(now - 3 * DAY, now + 3 * DAY)).toEqual([]);
  expect((await tlsWarnings(now - 5 * DAY, now + DAY + 60_000)).join()).toContain("(in 1 day)");
  expect((await tlsWarnings(now - 90 * DAY, now - 1000)).join()).toContain("expired on");
  // Not valid yet (copied in before its start, or this machine's clock is behind).
  expect((await tlsWarnings(now + DAY, now + 90 * DAY)).join()).toContain(`is not valid before ${new Date(now + DAY).toISOString()}`);
});
