/**
 * With STATS_TOKEN set, an admin opens /stats in a browser through its login prompt (any user
 * name, the token as password). Real headless Chromium answers the 401 challenge with
 * playwright's httpCredentials, exactly as a person typing into the prompt: it only does so
 * when the WWW-Authenticate line starts with a scheme it knows. The page's own same-origin
 * fetches (its in-place refresh) then carry the same credentials. Skips without /usr/bin/chromium.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { chromium, type Browser } from "playwright-core";
import type { HttpServer } from "../../src/http/server.ts";
import { addMessage, makeFixture, startServer, type Fixture } from "../http/fixture.ts";

const CHROMIUM = "/usr/bin/chromium";
const TOKEN = "s3cret-stats-token";
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.log(`skipping browser tests: ${CHROMIUM} not found (apt-get install -y chromium)`);

let fx: Fixture;
let server: HttpServer;
let browser: Browser;

beforeAll(async () => {
  if (!haveChromium) return;
  fx = makeFixture();
  addMessage(fx.db, { action: "archive", category: "default" });
  server = await startServer(fx, { token: TOKEN });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu"] });
}, 60_000);

afterAll(async () => {
  if (!haveChromium) return;
  await browser?.close();
  await server?.stop();
  fx?.cleanup();
}, 60_000);

test.skipIf(!haveChromium)("the browser's login prompt (token as password) opens /stats and its refresh", async () => {
  const context = await browser.newContext({ httpCredentials: { username: "admin", password: TOKEN } });
  const page = await context.newPage();
  const res = await page.goto(new URL("stats", server.url).href);
  expect(res?.status()).toBe(200);
  expect(await page.locator("#kpi-received .value").textContent()).toBe("1");
  // What the refresh does every 30 s (browser-side code as a string: no DOM lib in this project).
  expect(await page.evaluate(`fetch(location.pathname, { cache: "no-store" }).then((r) => r.status)`)).toBe(200);
  await context.close();
}, 30_000);

test.skipIf(!haveChromium)("a wrong password still gets 401", async () => {
  const context = await browser.newContext({ httpCredentials: { username: "admin", password: "nope" } });
  const res = await (await context.newPage()).goto(new URL("stats", server.url).href);
  expect(res?.status()).toBe(401);
  await context.close();
});
