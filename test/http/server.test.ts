/**
 * The HTTP server against a real SQLite file filled the way the pipeline fills it: routes,
 * methods, headers, the DNS-rebinding guard, and that /stats.json and /stats show what the rows say.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { createConnection } from "node:net";
import { hostname } from "node:os";
import { join } from "node:path";
import { rebindingGuard, type HttpServer } from "../../src/http/server.ts";
import type { StatsSnapshot } from "../../src/http/stats-data.ts";
import { dayKey } from "../../src/store/db.ts";
import { bumpCounter } from "../../src/store/counters.ts";
import { addAttempt, addDelivery, addMessage, addSession, get, makeFixture, startServer, type Fixture } from "./fixture.ts";

const DAY = 86_400_000;
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

function populate(db: Fixture["db"]): void {
  const now = Date.now();
  for (let i = 0; i < 3; i++) addMessage(db, { action: "archive", category: "default" });
  addMessage(db, { action: "reject", category: "spam", rule: "reject-spam" });
  addMessage(db, { action: "reject", category: "spam", rule: "reject-spam" });
  const fwd = addMessage(db, { action: "forward", category: "sales", rule: "to-sales" });
  addMessage(db, { action: "webhook", category: "orders" });
  addMessage(db, { action: "drop", category: "noise" });
  for (let i = 0; i < 4; i++) addMessage(db, { at: now - 3 * DAY, action: "archive" });
  addMessage(db, { at: now - 40 * DAY, action: "archive" }); // outside the 30-day window
  addSession(db, true);
  addSession(db, true);
  addSession(db, true);
  addSession(db, false);
  const d = addDelivery(db, fwd, { state: "deferred", createdAt: now - 7200_000, attempts: 2 });
  addAttempt(db, d, "forward", 350, "deferred", now, { rule: "to-sales", category: "sales" });
  addAttempt(db, d, "forward", 1200, "deferred", now, { rule: "to-sales", category: "sales" });
  addAttempt(db, d, "forward", 900, "delivered", now - 3 * DAY, { rule: "to-sales", category: "sales" });
  const w = addDelivery(db, addMessage(db, { action: "webhook" }), { kind: "webhook", target: "https://u:p@erp.example/hook?key=secret", state: "failed", attempts: 5, lastError: "HTTP 404" });
  addAttempt(db, w, "webhook", 80, "failed");
  addDelivery(db, addMessage(db, { action: "forward" }), { state: "held" });
}

describe("routes and methods", () => {
  test("GET of each route answers 200 with its content type", async () => {
    const cases: [string, string][] = [
      ["/stats", "text/html; charset=utf-8"],
      ["/stats.json", "application/json; charset=utf-8"],
      ["/metrics", "text/plain; version=0.0.4; charset=utf-8"],
      ["/healthz", "application/json; charset=utf-8"],
    ];
    for (const [path, type] of cases) {
      const res = await get(server, path);
      expect(res.status, path).toBe(200);
      expect(res.headers.get("content-type"), path).toBe(type);
      expect((await res.text()).length, path).toBeGreaterThan(10);
    }
  });

  test("HEAD answers the same status and headers with no body", async () => {
    const getRes = await get(server, "/stats.json");
    const getBody = await getRes.text();
    const head = await get(server, "/stats.json", { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-type")).toBe("application/json; charset=utf-8");
    expect(await head.text()).toBe("");
    expect(Number(head.headers.get("content-length"))).toBeGreaterThan(getBody.length / 2);
  });

  test("/ leads to the page (the start log names it), relative so a proxy's path prefix stays", async () => {
    const res = await get(server, "/", { redirect: "manual" });
    expect(res.status).toBe(302);
    expect(res.headers.get("location")).toBe("stats");
    const followed = await get(server, "/");
    expect(followed.url).toBe(new URL("/stats", server.url).href);
    expect(followed.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect((await get(server, "/", { method: "POST", body: "x", redirect: "manual" })).status).toBe(404);
  });

  test("unknown paths are 404, other methods 405 with Allow", async () => {
    for (const path of ["/stats/", "/admin", "/stats.json/../etc/passwd", "/favicon.ico", "/index.html"]) {
      expect((await get(server, path)).status, path).toBe(404);
    }
    for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
      const res = await get(server, "/stats", { method, ...(method === "POST" || method === "PUT" ? { body: "x" } : {}) });
      expect(res.status, method).toBe(405);
      expect(res.headers.get("allow")).toBe("GET, HEAD");
    }
  });

  test("every response carries the security headers", async () => {
    for (const path of ["/stats", "/stats.json", "/metrics", "/healthz", "/nope"]) {
      const res = await get(server, path);
      expect(res.headers.get("x-content-type-options"), path).toBe("nosniff");
      expect(res.headers.get("referrer-policy"), path).toBe("no-referrer");
      expect(res.headers.get("cache-control"), path).toBe("no-store");
      expect(res.headers.get("content-security-policy"), path).toStartWith("default-src 'none'");
    }
    const csp = (await get(server, "/stats")).headers.get("content-security-policy") ?? "";
    expect(csp).toMatch(/script-src 'sha256-[A-Za-z0-9+/=]+'/);
    expect(csp).toMatch(/style-src 'sha256-[A-Za-z0-9+/=]+'/);
    expect(csp).not.toContain("unsafe-inline");
    expect(csp).toContain("frame-ancestors 'none'");
  });
});

describe("stats.json", () => {
  test("counts match the rows inserted", async () => {
    populate(fx.db);
    const s = (await (await get(server, "/stats.json")).json()) as StatsSnapshot;
    const today = dayKey(Date.now());
    expect(s.today).toBe(today);
    expect(s.totals.today.received).toBe(10);
    expect(s.totals.today.byAction).toEqual({ reject: 2, archive: 3, forward: 2, webhook: 2, drop: 1 });
    expect(s.totals.last30Days.received).toBe(14);
    expect(s.totals.today.sessions).toBe(4);
    expect(s.totals.today.tlsSessions).toBe(3);
    expect(s.totals.today.tlsShare).toBe(0.75);
    expect(s.receivedPerDay).toHaveLength(30);
    expect(s.receivedPerDay.at(-1)).toEqual({ day: today, received: 10 });
    expect(s.receivedPerDay.at(-4)).toEqual({ day: dayKey(Date.now() - 3 * DAY), received: 4 });
    expect(s.categories.find((c) => c.category === "spam")).toEqual({ category: "spam", today: 2, last30Days: 2 });
    expect(s.categories[0]?.category).toBe("default");
    expect(s.queue.depth).toEqual({ queued: 0, deferred: 1, held: 1, delivering: 0, failed: 1 });
    expect(s.queue.oldestDeferredAgeSeconds).toBeGreaterThanOrEqual(7199);
    expect(s.totals.today.deliveries.forward.deferred).toBe(2);
    expect(s.totals.today.deliveries.webhook.failed).toBe(1);
    expect(s.deliveriesByRule).toEqual([
      { kind: "forward", rule: "to-sales", category: "sales", today: { delivered: 0, deferred: 2, failed: 0 }, last30Days: { delivered: 1, deferred: 2, failed: 0 } },
      { kind: "webhook", rule: "", category: "default", today: { delivered: 0, deferred: 0, failed: 1 }, last30Days: { delivered: 0, deferred: 0, failed: 1 } },
    ]);
    expect(s.failedDeliveries).toHaveLength(1);
    const f = s.failedDeliveries[0];
    expect(f?.target).toBe("https://erp.example/hook?…");
    expect(f?.lastError).toBe("HTTP 404");
    expect(f?.retryCommand).toBe(`mailgw queue retry ${f?.id}`);
    expect(s.rules.version).toBe("sha256:1a2b3c4d");
    expect(s.uptimeSeconds).toBeGreaterThanOrEqual(3723);
    expect(s.relay).toEqual({ configured: true, address: "smtp.relay.example:587", suspended: null, warning: null });
  });

  test("the last 30 days are today and the 29 before it; a category seen only yesterday has 0 today", async () => {
    const now = Date.now();
    bumpCounter(fx.db, now - 29 * DAY, "received", {}, 5);
    bumpCounter(fx.db, now - 30 * DAY, "received", {}, 7); // the 31st day back: out
    bumpCounter(fx.db, now - DAY, "action:archive", { category: "newsletter" }, 3);
    const s = (await (await get(server, "/stats.json")).json()) as StatsSnapshot;
    expect(s.totals.last30Days.received).toBe(5);
    expect(s.receivedPerDay[0]).toEqual({ day: dayKey(now - 29 * DAY), received: 5 });
    expect(s.categories.find((c) => c.category === "newsletter")).toEqual({ category: "newsletter", today: 0, last30Days: 3 });
  });

  test("relay missing and refused rules reload are reported", async () => {
    fx.status.relayConfigured = false;
    fx.status.rulesStatus = { ...fx.status.rulesStatus, lastError: "rules.yaml:3:5 unknown operator", lastErrorAt: Date.now(), reloads: { ok: 1, failed: 1 } };
    const s = (await (await get(server, "/stats.json")).json()) as StatsSnapshot;
    expect(s.relay.configured).toBe(false);
    expect(s.relay.warning).toContain("RELAY_SMTP_HOST");
    expect(s.rules.lastError).toBe("rules.yaml:3:5 unknown operator");
    const page = await (await get(server, "/stats")).text();
    expect(page).toContain("No relay configured");
    expect(page).toContain("The last rules reload was refused");
    expect(page).toContain("rules.yaml:3:5 unknown operator");
    // An alert on it, and a health check that says so without failing (the old rules work).
    const metrics = await (await get(server, "/metrics")).text();
    expect(metrics).toMatch(/^mailgw_rules_last_reload_ok 0$/m);
    expect(metrics).toMatch(/^mailgw_rules_reload_total\{result="failure"\} 1$/m);
    const health = await get(server, "/healthz");
    expect(health.status).toBe(200);
    expect(((await health.json()) as { warnings: string[] }).warnings).toContain("the last rules reload was refused; the previous rules are in force");
    fx.status.rulesStatus = { ...fx.status.rulesStatus, lastError: null, lastErrorAt: null, reloads: { ok: 2, failed: 1 } };
    expect(await (await get(server, "/metrics")).text()).toMatch(/^mailgw_rules_last_reload_ok 1$/m);
  });

  test("only the last 20 failed deliveries are listed, newest first", async () => {
    const now = Date.now();
    for (let i = 0; i < 25; i++) {
      addDelivery(fx.db, addMessage(fx.db, { action: "forward", subject: `s${i}` }), { state: "failed", updatedAt: now - (25 - i) * 1000, lastError: `550 no ${i}` });
    }
    const s = (await (await get(server, "/stats.json")).json()) as StatsSnapshot;
    expect(s.failedDeliveries).toHaveLength(20);
    expect(s.failedDeliveries[0]?.subject).toBe("s24");
    expect(s.failedDeliveries[19]?.subject).toBe("s5");
    expect(s.queue.depth.failed).toBe(25);
    // The page says the list is cut, and how to see them all.
    const html = await (await get(server, "/stats")).text();
    expect(html).toContain("Failed deliveries <small>latest 20 of 25</small>");
    expect(html).toContain("mailgw queue list --state failed");
  });
});

describe("stats page", () => {
  test("shows today's bar with its count, totals, actions, queue and retry commands", async () => {
    populate(fx.db);
    const html = await (await get(server, "/stats")).text();
    const today = dayKey(Date.now());
    expect(html).toStartWith("<!doctype html>");
    const todayBar = /<g class="bar today"[^>]*>/.exec(html)?.[0];
    expect(todayBar).toBe(`<g class="bar today" data-day="${today}" data-count="10" data-today="true" role="img" aria-label="Today, ${today}: 10 received">`);
    expect((html.match(/<g class="bar/g) ?? []).length).toBe(30);
    expect(html).toContain("mx.test.example");
    expect(html).toMatch(/<tr data-action="reject"><td>Rejected.*?<td class="num">2<\/td><td class="num">2<\/td><\/tr>/);
    expect(html).toContain('<dd data-state="deferred">1</dd>');
    expect(html).toMatch(/<code class="cmd">mailgw queue retry \d+<\/code>/);
    expect(html).toContain("HTTP 404");
    expect(html).toMatch(/<tr data-rule="to-sales" data-kind="forward" data-category="sales">.*?<td data-label="Deferred" class="num warn">2 <span class="muted">\(2 today\)<\/span><\/td>/);
    expect(html).toContain('<tr data-rule="" data-kind="webhook" data-category="default"><td data-label="Rule"><span class="muted">(default action)</span>');
    expect(html).toContain("75%");
    expect(html).not.toContain("secret");
    expect(html).not.toContain("u:p@");
    // Self-contained: no external URL is referenced anywhere.
    expect(html).not.toMatch(/(?:src|href)="(?:https?:)?\/\//);
    expect(html).not.toMatch(/\sstyle="/);
  });

  test("the deliveries-by-rule table shows the 50 busiest rows and counts the rest with their failures", async () => {
    const now = Date.now();
    for (let i = 0; i < 60; i++) bumpCounter(fx.db, now, "delivered:forward", { rule: `rule-${String(i).padStart(2, "0")}`, category: "c" }, 100 - i);
    bumpCounter(fx.db, now, "failed:forward", { rule: "rule-59", category: "c" }, 1);
    const html = await (await get(server, "/stats")).text();
    expect((html.match(/<tr data-rule="rule-/g) ?? []).length).toBe(50);
    expect(html).toContain('data-rule="rule-00"');
    expect(html).not.toContain('data-rule="rule-55"');
    expect(html).toContain("10 more rule, category and kind combinations with fewer attempts (1 failed in 30 days)");
    const json = (await (await get(server, "/stats.json")).json()) as StatsSnapshot;
    expect(json.deliveriesByRule.length).toBe(60);
  });

  test("an empty database renders a complete page", async () => {
    const html = await (await get(server, "/stats")).text();
    expect(html).toContain("No failed deliveries");
    expect(html).toContain("No messages classified in the last 30 days");
    expect(html).toContain("No forward or webhook deliveries attempted in the last 30 days");
    expect(html).toContain('data-count="0" data-today="true"');
    expect(html.trimEnd()).toEndWith("</html>");
  });
});

/** One raw HTTP/1.1 request with the given Host header (fetch would set its own); returns the status. */
async function statusWithHost(url: string, path: string, host: string | null): Promise<number> {
  const { port } = new URL(url);
  const reply = await new Promise<string>((resolve, reject) => {
    let text = "";
    const conn = createConnection({ host: "127.0.0.1", port: Number(port) }, () => {
      conn.write(`GET ${path} HTTP/1.${host === null ? 0 : 1}\r\n${host === null ? "" : `Host: ${host}\r\n`}Connection: close\r\n\r\n`);
    });
    conn.on("data", (d) => (text += d.toString()));
    conn.on("end", () => resolve(text));
    conn.on("error", reject);
  });
  return Number(/^HTTP\/1\.[01] (\d{3})/.exec(reply)?.[1] ?? 0);
}

describe("DNS rebinding", () => {
  test("loopback, no token: a foreign name in Host gets 403; IPs, localhost and the machine's names are answered", async () => {
    const port = new URL(server.url).port;
    expect(await statusWithHost(server.url, "/stats.json", `evil.example:${port}`)).toBe(403);
    expect(await statusWithHost(server.url, "/metrics", "rebind.attacker.example")).toBe(403);
    expect(await statusWithHost(server.url, "/stats", "mail.company.com")).toBe(403);
    // Open like it is with a token: a load balancer probing by the public name sees it healthy.
    expect(await statusWithHost(server.url, "/healthz", "mail.company.com")).toBe(200);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, "app.localhost", `[::1]:${port}`, hostname(), null]) {
      expect({ host, status: await statusWithHost(server.url, "/stats.json", host) }).toEqual({ host, status: 200 });
    }
  });

  test("the guard is off with a token or a network bind", () => {
    expect(rebindingGuard("127.0.0.1", false, ["mx.company.com"])("mx.company.com:3000")).toBe(true);
    expect(rebindingGuard("127.0.0.1", false, ["mx.company.com"])("MX.Company.com.")).toBe(true);
    expect(rebindingGuard("127.0.0.1", false, ["mx.company.com"])("stats.company.com")).toBe(false);
    expect(rebindingGuard("127.0.0.1", true, [])("evil.example")).toBe(true);
    expect(rebindingGuard("0.0.0.0", false, [])("mailgw:3000")).toBe(true);
  });
});

describe("lifecycle", () => {
  test("a port already in use is refused with a one-line error naming HTTP_HOST/HTTP_PORT", async () => {
    const { createHttpServer } = await import("../../src/http/server.ts");
    const { silentLogger } = await import("../../src/log/logger.ts");
    const port = Number(new URL(server.url).port);
    const second = createHttpServer({
      config: { http: { host: "127.0.0.1", port, statsToken: null }, dataDir: fx.dataDir, databasePath: join(fx.dataDir, "mail-gateway.db"), smtp: { hostname: "x" } },
      db: fx.db,
      logger: silentLogger,
      status: fx.status,
    });
    expect(() => second.start()).toThrow(`cannot listen for HTTP on 127.0.0.1:${port}`);
    expect(() => second.url).toThrow("not started");
  });

  test("stop() closes the port and is idempotent", async () => {
    const url = server.url;
    await server.stop();
    await server.stop();
    await expect(fetch(new URL("/healthz", url))).rejects.toThrow();
    server.start(); // afterEach stops it again
    expect((await get(server, "/healthz")).status).toBe(200);
  });
});
