/**
 * STATS_TOKEN on and off: without a token everything is open; with one, /stats, /stats.json and
 * /metrics need `Authorization: Bearer TOKEN` (or Basic with the token as password) and answer
 * 401 with WWW-Authenticate otherwise; /healthz stays open. Binding a non-loopback address
 * without a token logs a warning.
 */
import { afterEach, expect, test } from "bun:test";
import { createTokenChecker } from "../../src/http/auth.ts";
import { exposureWarning, isLoopback, type HttpServer } from "../../src/http/server.ts";
import { createLogger } from "../../src/log/logger.ts";
import { get, makeFixture, startServer, type Fixture } from "./fixture.ts";

const TOKEN = "s3cret-token-42";
const GUARDED = ["/stats", "/stats.json", "/metrics"];
let fx: Fixture | null = null;
let server: HttpServer | null = null;
afterEach(async () => {
  await server?.stop();
  fx?.cleanup();
  server = null;
  fx = null;
}, 60_000);

test("without a token every route is open", async () => {
  fx = makeFixture();
  server = await startServer(fx, { token: null });
  for (const path of [...GUARDED, "/healthz"]) expect((await get(server, path)).status, path).toBe(200);
});

test("with a token, guarded routes need it; /healthz does not", async () => {
  fx = makeFixture();
  server = await startServer(fx, { token: TOKEN });
  const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString("base64")}`;
  for (const path of GUARDED) {
    for (const authorization of [undefined, "Bearer wrong", `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, `Token ${TOKEN}`, TOKEN, basic("admin", "nope"), "Bearer "]) {
      const res = await get(server, path, authorization === undefined ? {} : { headers: { authorization } });
      expect(res.status, `${path} ${authorization}`).toBe(401);
      expect(res.headers.get("www-authenticate"), path).toContain('Bearer realm="mailgw"');
      // One header line (Bun joins them): a browser uses only its first scheme, so Basic leads.
      expect(res.headers.get("www-authenticate"), path).toStartWith('Basic realm="mailgw"');
      expect(await res.text()).not.toContain("mailgw_");
    }
    const head = await get(server, path, { method: "HEAD" });
    expect(head.status).toBe(401);
    expect((await get(server, path, { headers: { authorization: `Bearer ${TOKEN}` } })).status, path).toBe(200);
    expect((await get(server, path, { headers: { authorization: `bearer ${TOKEN}` } })).status, path).toBe(200);
    expect((await get(server, path, { headers: { authorization: basic("admin", TOKEN) } })).status, path).toBe(200);
  }
  expect((await get(server, "/healthz")).status).toBe(200);
});

test("the checker compares hashes, so tokens of any length are handled the same way", () => {
  const check = createTokenChecker("x".repeat(100));
  expect(check.allows("Bearer " + "x".repeat(100))).toBe(true);
  expect(check.allows("Bearer x")).toBe(false);
  expect(check.allows("Bearer " + "x".repeat(10_000))).toBe(false);
  expect(check.allows(null)).toBe(false);
  expect(createTokenChecker(null).allows(null)).toBe(true);
});

test("a non-loopback bind without a token is warned about; loopback or a token is not", async () => {
  expect(isLoopback("127.0.0.1")).toBe(true);
  expect(isLoopback("127.1.2.3")).toBe(true);
  expect(isLoopback("::1")).toBe(true);
  expect(isLoopback("[::1]")).toBe(true);
  expect(isLoopback("localhost")).toBe(true);
  expect(isLoopback("0.0.0.0")).toBe(false);
  expect(isLoopback("::")).toBe(false);
  expect(isLoopback("192.0.2.7")).toBe(false);
  // Other written forms of the same addresses (they were taken for public ones).
  expect(isLoopback("0:0:0:0:0:0:0:1")).toBe(true);
  expect(isLoopback("[0000::0001]")).toBe(true);
  expect(isLoopback("::FFFF:127.0.0.1")).toBe(true);
  expect(isLoopback("::ffff:7f00:1")).toBe(true);
  expect(isLoopback("::ffff:127.9.8.7")).toBe(true);
  expect(isLoopback("::ffff:192.0.2.7")).toBe(false);
  expect(isLoopback("0:0:0:0:0:0:0:0")).toBe(false);
  expect(isLoopback("::2")).toBe(false);
  expect(isLoopback("mx.localhost")).toBe(true);
  expect(exposureWarning("0.0.0.0", false)).toContain("set STATS_TOKEN");
  expect(exposureWarning("192.0.2.7", false)).toContain("set STATS_TOKEN");
  expect(exposureWarning("0.0.0.0", true)).toBeNull();
  expect(exposureWarning("127.0.0.1", false)).toBeNull();

  // Tests bind loopback only, so the server side is checked for the quiet case: no warning line.
  const lines: string[] = [];
  const logger = createLogger({ level: "info", format: "json", write: (s) => void lines.push(s) });
  fx = makeFixture();
  server = await startServer(fx, { logger });
  const entries = lines.map((l) => JSON.parse(l) as { level: string; msg: string; url?: string });
  expect(entries.filter((l) => l.level === "warn")).toHaveLength(0);
  expect(entries.find((l) => l.msg === "http listening")?.url).toBe(server.url);
});
