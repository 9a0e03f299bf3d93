/**
 * HTML's named references as a real Chromium (Debian's /usr/bin/chromium driven by
 * playwright-core; no browser is ever downloaded) shows them, against the `body` text mailgw
 * reads from the same markup (htmlToText): every name of the WHATWG list with and without its
 * ';', each in other cases, and names that start with another (`&centerdot;`, `&notit;`). Read
 * as a shorter name, `&centerdot;` gave `¢erdot;` where the reader sees `·`. Whitespace runs
 * compare as one space and invisible characters as nothing (mailgw's reading keeps words whole).
 * Skips with a printed reason when /usr/bin/chromium is missing.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { BrowserContext } from "playwright-core";
import { htmlToText } from "../../src/parse/html-text.ts";
import { htmlEntities } from "../../node_modules/postal-mime/src/html-entities.ts";
import { CHROMIUM, haveChromium, launchChromium, type HeadlessChromium } from "./chromium.ts";

if (!haveChromium) console.log(`skipping browser tests: ${CHROMIUM} not found (apt-get install -y chromium)`);

let context: BrowserContext;
let browser: HeadlessChromium | null = null;

beforeAll(async () => {
  if (!haveChromium) return;
  browser = await launchChromium();
  context = browser.context;
}, 60_000);

afterAll(async () => {
  if (!haveChromium) return;
  await browser?.close();
}, 60_000);

/** Every name as written in the list, without its ';', in upper, lower and title case, and a few names that start with another. */
function cases(): string[] {
  const names = Object.keys(htmlEntities).map((key) => key.slice(1));
  const bare = [...new Set(names.map((name) => name.replace(/;$/, "")))];
  const variants = bare.flatMap((name) => [name.toUpperCase(), name.toLowerCase(), name[0]!.toUpperCase() + name.slice(1).toLowerCase()]);
  const prefixed = ["&centerdot;", "&centerdot", "&notit;", "&notin", "&ampx;", "&amp;x", "&copysr;", "&copy2024", "&Tabx;", "&CounterClockwiseContourIntegralx;"];
  return [
    ...names.map((name) => `x&${name}y`),
    ...bare.map((name) => `x&${name} y`),
    ...[...new Set(variants)].flatMap((name) => [`x&${name};y`, `x&${name}y`]),
    ...prefixed.map((text) => `a${text}b`),
  ];
}

/** A reading compared as words: whitespace runs as one space, invisible characters dropped. */
const words = (text: string): string => text.replace(/[\u00ad\u200b-\u200d\u2060-\u2063]/gu, "").replace(/\s+/gu, " ").trim();

test.skipIf(!haveChromium)("every named reference reads as Chromium's innerText shows it", async () => {
  const all = cases();
  const page = await context.newPage();
  await page.setContent(`<!doctype html><meta charset="utf-8"><body>${all.map((text) => `<div>${text}</div>`).join("")}</body>`);
  // Browser-side code is passed as a string: this project's TypeScript has no DOM lib.
  const shown = (await page.evaluate(`[...document.querySelectorAll("div")].map((d) => d.innerText)`)) as string[];
  expect(shown.length).toBe(all.length);
  const differ = all.map((html, i) => ({ html, chromium: words(shown[i] ?? ""), mailgw: words(htmlToText(html, 200)) })).filter((row) => row.chromium !== row.mailgw);
  expect(differ).toEqual([]);
  expect(all.length).toBeGreaterThan(10_000);
}, 60_000);
