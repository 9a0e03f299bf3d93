/**
 * The stats page in a real headless Chromium (Debian's /usr/bin/chromium driven by
 * playwright-core; no browser is ever downloaded): today's bar is there and labelled with the
 * right count, no console errors (CSP violations included), no request leaves the page's own
 * origin, a hostile subject stays text, the in-place refresh works, and nothing overflows a
 * phone screen. Screenshots at phone and desktop widths go to test-output/.
 * Skips with a printed reason when /usr/bin/chromium is missing.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { BrowserContext, Page } from "playwright-core";
import type { HttpServer } from "../../src/http/server.ts";
import { dayKey } from "../../src/store/db.ts";
import { addAttempt, addDelivery, addMessage, addSession, makeFixture, startServer, type Fixture } from "../http/fixture.ts";
import { CHROMIUM, haveChromium, launchChromium, type HeadlessChromium } from "./chromium.ts";

const OUTPUT = join(import.meta.dir, "../../test-output");
const DAY = 86_400_000;
const XSS = "<img src=x onerror=alert(1)>";
if (!haveChromium) console.log(`skipping browser tests: ${CHROMIUM} not found (apt-get install -y chromium)`);

let fx: Fixture;
let server: HttpServer;
let context: BrowserContext;
let browser: HeadlessChromium | null = null;
let todayCount = 0;

function populate(): void {
  const now = Date.now();
  // A plausible month: weekday peaks, quiet weekends, a few rejects and forwards.
  for (let d = 29; d >= 1; d--) {
    const at = now - d * DAY;
    const weekday = new Date(at).getUTCDay();
    const n = weekday === 0 || weekday === 6 ? 3 + (d % 3) : 12 + ((d * 7) % 11);
    for (let i = 0; i < n; i++) {
      const action = i % 9 === 0 ? "reject" : i % 4 === 0 ? "forward" : i % 7 === 0 ? "webhook" : "archive";
      addMessage(fx.db, { at, action, category: action === "reject" ? "spam" : i % 3 === 0 ? "sales" : "default" });
    }
  }
  const cats = ["sales", "support", "default", "spam"] as const;
  for (let i = 0; i < 14; i++) {
    addMessage(fx.db, { action: i % 5 === 0 ? "reject" : i % 3 === 0 ? "forward" : "archive", category: cats[i % 4] ?? "default", subject: `Quote request #${i}` });
    todayCount++;
  }
  for (let i = 0; i < 20; i++) addSession(fx.db, i % 5 !== 0);
  const fwd = addMessage(fx.db, { action: "forward", category: "sales", subject: "견적 요청 — 2025 pricing", mailFrom: "buyer@customer.example" });
  todayCount++;
  const deferred = addDelivery(fx.db, fwd, { state: "deferred", createdAt: now - 5400_000, attempts: 3, lastError: "421 4.7.0 Try again later" });
  addAttempt(fx.db, deferred, "forward", 820, "deferred");
  const bad = addMessage(fx.db, { action: "forward", subject: XSS, mailFrom: "attacker@evil.example" });
  todayCount++;
  addDelivery(fx.db, bad, { state: "failed", attempts: 1, target: '["ceo@company.com"]', lastError: '550 5.7.1 <script>alert("relay")</script> Message rejected due to content restrictions (SPAM score 9.8 > 5.0)' });
  const hook = addMessage(fx.db, { action: "webhook", category: "orders", subject: "Order 10442 confirmation" });
  todayCount++;
  addDelivery(fx.db, hook, { kind: "webhook", target: "https://erp.internal/inbound?key=abc", state: "failed", attempts: 8, lastError: "HTTP 404 Not Found", updatedAt: now - 3 * 3600_000 });
  // A data dir with two spaces in its name: the command copied from the page must keep them.
  fx.status.queueCommandArgs = QUEUE_ARGS;
}

// With serve's own database as well (0ddc6cb): a command of ~100 characters, as on a real host.
const QUEUE_ARGS = " --data-dir '/srv/mail  data' --database-url '/var/lib/mailgw-db/mail-gateway.db'";
/** The retry commands as the page renders them (what a copy takes), in page order. */
const RENDERED_COMMANDS = `[...document.querySelectorAll("code.cmd")].map((c) => c.innerText)`;

beforeAll(async () => {
  if (!haveChromium) return;
  mkdirSync(OUTPUT, { recursive: true });
  fx = makeFixture();
  populate();
  server = await startServer(fx, { hostname: "mx.company.com" });
  browser = await launchChromium();
  context = browser.context;
}, 60_000);

afterAll(async () => {
  if (!haveChromium) return;
  await browser?.close();
  await server?.stop();
  fx?.cleanup();
}, 60_000);

interface Watch {
  errors: string[];
  foreign: string[];
  dialogs: string[];
}

async function openStats(width: number, height: number, scheme: "light" | "dark"): Promise<{ page: Page; watch: Watch }> {
  const page = await context.newPage();
  const watch: Watch = { errors: [], foreign: [], dialogs: [] };
  const origin = new URL(server.url).origin;
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") watch.errors.push(`${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (err) => watch.errors.push(`pageerror: ${err.message}`));
  page.on("dialog", (d) => {
    watch.dialogs.push(d.message());
    void d.dismiss();
  });
  page.on("request", (r) => {
    const url = r.url();
    if (!url.startsWith("data:") && new URL(url).origin !== origin) watch.foreign.push(url);
  });
  // Browser-side code is passed as strings: this project's TypeScript has no DOM lib.
  await page.addInitScript({
    content: `document.addEventListener("securitypolicyviolation", (e) => console.error("CSP violation: " + e.violatedDirective + " " + e.blockedURI));`,
  });
  await page.setViewportSize({ width, height });
  await page.emulateMedia({ colorScheme: scheme });
  const res = await page.goto(new URL("stats", server.url).href, { waitUntil: "load" });
  expect(res?.status()).toBe(200);
  return { page, watch };
}

test.skipIf(!haveChromium)("desktop: today's bar is labelled with today's count; clean console; same-origin only", async () => {
  const { page, watch } = await openStats(1280, 900, "light");
  const today = dayKey(Date.now());
  const bar = page.locator('g.bar[data-today="true"]');
  expect(await bar.count()).toBe(1);
  expect(await bar.getAttribute("data-day")).toBe(today);
  expect(await bar.getAttribute("data-count")).toBe(String(todayCount));
  expect(await bar.getAttribute("aria-label")).toBe(`Today, ${today}: ${todayCount} received`);
  expect(await bar.locator("title").textContent()).toBe(`Today, ${today}: ${todayCount} received`);
  const box = await bar.locator("rect.v").boundingBox();
  expect(box?.width ?? 0).toBeGreaterThan(5);
  expect(box?.height ?? 0).toBeGreaterThan(5);
  expect(await page.locator("g.bar").count()).toBe(30);
  expect(await page.locator("#kpi-received .value").textContent()).toBe(String(todayCount));
  // The hostile subject is shown as text, and no dialog ever opened.
  expect(await page.getByText(XSS, { exact: true }).count()).toBe(1);
  expect(await page.locator("img").count()).toBe(0);
  // Spaces in the command kept as written (white-space collapsed them: the pasted command named another directory).
  const commands = (await page.evaluate(RENDERED_COMMANDS)) as string[];
  expect(commands.length).toBe(2);
  for (const c of commands) expect(c).toMatch(new RegExp(`^mailgw queue retry \\d+${QUEUE_ARGS.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`));
  // Kept on one line (nowrap, then pre), the command set the table's width: it ran 90 px past its
  // card at 1280 px, the error and target squeezed to a few letters a line, and at 1024 px the page scrolled sideways.
  const fits = `(() => { const t = document.querySelector("table.failed"); return t.scrollWidth - t.closest(".card").clientWidth; })()`;
  expect((await page.evaluate(fits)) as number).toBeLessThanOrEqual(0);
  await page.setViewportSize({ width: 1024, height: 900 });
  expect((await page.evaluate(fits)) as number).toBeLessThanOrEqual(0);
  expect((await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")) as number).toBeLessThanOrEqual(0);
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.screenshot({ path: join(OUTPUT, "stats-desktop-light.png"), fullPage: true });
  expect(watch.errors).toEqual([]);
  expect(watch.foreign).toEqual([]);
  expect(watch.dialogs).toEqual([]);
  await page.close();
});

test.skipIf(!haveChromium)("phone, dark: fits 390 px without horizontal scrolling", async () => {
  const { page, watch } = await openStats(390, 844, "dark");
  const overflow = (await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")) as number;
  expect(overflow).toBeLessThanOrEqual(0);
  // Wrapped on a phone, the spaces still kept.
  for (const c of (await page.evaluate(RENDERED_COMMANDS)) as string[]) expect(c.replace(/\n/g, "")).toContain(QUEUE_ARGS.trim());
  const bg = await page.evaluate("getComputedStyle(document.body).backgroundColor");
  expect(bg).toBe("rgb(14, 17, 21)"); // the dark palette applied
  expect(await page.locator('g.bar[data-today="true"]').getAttribute("data-count")).toBe(String(todayCount));
  await page.screenshot({ path: join(OUTPUT, "stats-phone-dark.png"), fullPage: true });
  await page.screenshot({ path: join(OUTPUT, "stats-phone-dark-first-screen.png") });
  await page.emulateMedia({ colorScheme: "light" });
  await page.screenshot({ path: join(OUTPUT, "stats-phone-light.png"), fullPage: true });
  expect(watch.errors).toEqual([]);
  expect(watch.foreign).toEqual([]);
  await page.close();
});

test.skipIf(!haveChromium)("desktop dark with warnings, and the in-place refresh picks up new mail", async () => {
  fx.status.relayConfigured = false;
  fx.status.rulesStatus = { ...fx.status.rulesStatus, lastError: "rules.yaml:14:9: unknown operator 'containz' (did you mean 'contains'?)", lastErrorAt: Date.now() - 600_000, reloads: { ok: 3, failed: 1 } };
  const { page, watch } = await openStats(1280, 900, "dark");
  expect(await page.locator(".alert").count()).toBe(2);
  await page.screenshot({ path: join(OUTPUT, "stats-desktop-dark.png"), fullPage: true });
  addMessage(fx.db, { action: "archive" });
  const expected = String(todayCount + 1);
  // The page refreshes on becoming visible (and every 30 s); trigger it instead of waiting.
  await page.evaluate(`document.dispatchEvent(new Event("visibilitychange"))`);
  // Poll from the test side: page.waitForFunction evaluates its string predicate inside the
  // page, which the page's own CSP (no 'unsafe-eval') refuses whenever the first check fails.
  const todayBarCount = `document.querySelector('g.bar[data-today="true"]')?.getAttribute("data-count")`;
  const deadline = Date.now() + 5000;
  while ((await page.evaluate(todayBarCount)) !== expected && Date.now() < deadline) await Bun.sleep(25);
  expect(await page.evaluate(todayBarCount)).toBe(expected);
  expect(await page.locator("#kpi-received .value").textContent()).toBe(expected);
  expect(watch.errors).toEqual([]);
  expect(watch.foreign).toEqual([]);
  await page.close();
});

test.skipIf(!haveChromium)("the CSP blocks injected inline script and style, and the watcher reports it", async () => {
  const { page, watch } = await openStats(800, 600, "light");
  const ran = (await page.evaluate(`(() => {
    const div = document.createElement("div");
    div.innerHTML = '<span id="styled" style="color: rgb(255, 0, 0)">x</span>';
    document.body.append(div);
    const script = document.createElement("script");
    script.textContent = "window.injected = true";
    document.body.append(script);
    return { injected: window.injected === true, color: getComputedStyle(document.getElementById("styled")).color };
  })()`)) as { injected: boolean; color: string };
  expect(ran.injected).toBe(false);
  expect(ran.color).not.toBe("rgb(255, 0, 0)");
  // The console messages come over the DevTools connection, after the evaluate's result.
  const reported = /Content Security Policy|CSP violation/;
  const deadline = Date.now() + 5000;
  while (!reported.test(watch.errors.join("\n")) && Date.now() < deadline) await Bun.sleep(25);
  expect(watch.errors.join("\n")).toMatch(reported);
  await page.close();
});
