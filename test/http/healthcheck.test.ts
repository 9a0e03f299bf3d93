/**
 * `mailgw healthcheck` as a real subprocess against a real server: exit 0 and one line when
 * healthy, exit 1 and one line on stderr when /healthz says 503 or nothing answers.
 */
import { afterEach, beforeEach, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { healthzUrl, healthzUrls } from "../../src/cli/healthcheck.ts";
import type { HttpServer } from "../../src/http/server.ts";
import { makeFixture, startServer, type Fixture } from "./fixture.ts";

const MAIN = join(import.meta.dir, "../../src/main.ts");
let fx: Fixture;
let server: HttpServer;
beforeEach(async () => {
  fx = makeFixture();
  server = await startServer(fx);
}, 60_000);
afterEach(async () => {
  await server.stop();
  fx.cleanup();
}, 60_000);

async function healthcheck(port: number, host = "127.0.0.1", extra: string[] = []) {
  const proc = Bun.spawn([process.execPath, MAIN, "healthcheck", ...extra], {
    cwd: fx.dir, // no .env there
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HTTP_HOST: host, HTTP_PORT: String(port) },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { stdout, stderr, code };
}

const portOf = (s: HttpServer) => Number(new URL(s.url).port);

test("healthy → exit 0, one line on stdout", async () => {
  const r = await healthcheck(portOf(server));
  expect(r.code).toBe(0);
  expect(r.stdout).toBe(`healthy: http://127.0.0.1:${portOf(server)}/healthz\n`);
  expect(r.stderr).toBe("");
});

test("healthy with warnings: a warning's line feed or ESC (a relay's reply quoted in it) is written escaped, on one line", async () => {
  const fake = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch: () => Response.json({ status: "ok", warnings: ["relay suspended: 554 no\n::notice::x \u001b[2J"] }),
  });
  try {
    const r = await healthcheck(fake.port ?? 0);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`healthy: http://127.0.0.1:${fake.port}/healthz (warnings: relay suspended: 554 no\\u000a::notice::x \\u001b[2J)\n`);
  } finally {
    fake.stop(true);
  }
});

test("--env-file: the port comes from the file serve was started with; a missing file is one line", async () => {
  const envFile = join(fx.dir, "mailgw.env");
  writeFileSync(envFile, `HTTP_HOST=127.0.0.1\nHTTP_PORT=${portOf(server)}\n`);
  const proc = Bun.spawn([process.execPath, MAIN, "healthcheck", "--env-file", envFile], {
    cwd: fx.dir,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  expect({ code, stdout }).toEqual({ code: 0, stdout: `healthy: http://127.0.0.1:${portOf(server)}/healthz\n` });
  const missing = await healthcheck(portOf(server), "127.0.0.1", ["--env-file", join(fx.dir, "nope.env")]);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toBe(`mailgw: --env-file ${join(fx.dir, "nope.env")} does not exist\n`);
});

test("another setting's typo in .env (for the next start to refuse) does not make a running gateway unhealthy", async () => {
  writeFileSync(join(fx.dir, ".env"), "RATE_LIMIT_MAX=lots\nRELAY_SMTP_SECURE=maybe\n");
  const r = await healthcheck(portOf(server));
  expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ code: 0, stdout: `healthy: http://127.0.0.1:${portOf(server)}/healthz\n`, stderr: "" });
});

test("--http-port, as serve was given it, overrides HTTP_PORT", async () => {
  const r = await healthcheck(1, "127.0.0.1", ["--http-port", String(portOf(server))]);
  expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 0, stdout: `healthy: http://127.0.0.1:${portOf(server)}/healthz\n` });
  const bad = await healthcheck(portOf(server), "127.0.0.1", ["--http-port", "http"]);
  expect(bad.code).toBe(1);
  expect(bad.stderr).toStartWith("mailgw: HTTP_PORT=http is not an integer");
});

test("a wildcard HTTP_HOST is asked on loopback", async () => {
  expect(healthzUrl("0.0.0.0", 3000)).toBe("http://127.0.0.1:3000/healthz");
  expect(healthzUrl("::", 3000)).toBe("http://[::1]:3000/healthz");
  expect(healthzUrl("::1", 3000)).toBe("http://[::1]:3000/healthz");
  expect(healthzUrl("10.0.0.5", 80)).toBe("http://10.0.0.5:80/healthz");
  const r = await healthcheck(portOf(server), "0.0.0.0");
  expect(r.code).toBe(0);
});

test("unhealthy (503) → exit 1 with the reason on one line", async () => {
  fx.status.listening = false;
  const r = await healthcheck(portOf(server));
  expect(r.code).toBe(1);
  expect(r.stdout).toBe("");
  expect(r.stderr).toBe(`mailgw: unhealthy: smtp: SMTP listener is not accepting connections (http://127.0.0.1:${portOf(server)}/healthz)\n`);
});

test("nothing listening → exit 1, one line", async () => {
  const port = portOf(server);
  await server.stop();
  const r = await healthcheck(port);
  expect(r.code).toBe(1);
  expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
  expect(r.stderr).toContain("unreachable");
  server = await startServer(fx); // for afterEach
});

test("a bad --timeout is refused", async () => {
  const r = await healthcheck(portOf(server), "127.0.0.1", ["--timeout", "soon"]);
  expect(r.code).toBe(1);
  expect(r.stderr).toContain("--timeout=soon");
});

test("HTTP_HOST=:: is asked on ::1, then on 127.0.0.1 (IPv6 may be turned off in a container)", () => {
  expect(healthzUrls("::", 3000)).toEqual(["http://[::1]:3000/healthz", "http://127.0.0.1:3000/healthz"]);
  expect(healthzUrls("::1", 3000)).toEqual(["http://[::1]:3000/healthz"]);
  expect(healthzUrls("0.0.0.0", 3000)).toEqual(["http://127.0.0.1:3000/healthz"]);
});

test("HTTP_HOST=:: with the server on 127.0.0.1 only: ::1 refuses, 127.0.0.1 answers → healthy", async () => {
  const r = await healthcheck(portOf(server), "::");
  expect(r.code).toBe(0);
  expect(r.stdout).toStartWith(`healthy: http://127.0.0.1:${portOf(server)}/healthz`);
});

test("a 200 that is not mailgw's report (another service on HTTP_PORT) → unhealthy", async () => {
  const other = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("<html>It works!</html>", { headers: { "content-type": "text/html" } }) });
  try {
    const r = await healthcheck(other.port ?? 0);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`mailgw: unhealthy: HTTP 200 (http://127.0.0.1:${other.port}/healthz)\n`);
  } finally {
    await other.stop(true);
  }
});

test("a /healthz that never answers → exit 1 after --timeout, saying so", async () => {
  const { createServer } = await import("node:net");
  const silent = createServer(() => undefined); // accepts, never replies
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", () => resolve()));
  const port = (silent.address() as { port: number }).port;
  try {
    const r = await healthcheck(port, "127.0.0.1", ["--timeout", "300"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("no answer within 300 ms");
  } finally {
    silent.close();
  }
});
