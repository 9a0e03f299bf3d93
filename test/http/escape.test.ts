/**
 * Everything shown that came from a message or a relay is escaped: hostile subjects,
 * addresses, relay errors, categories and rules errors render as text, never as markup.
 */
import { afterEach, beforeEach, expect, test } from "bun:test";
import { escapeHtml, escapePromLabel } from "../../src/http/escape.ts";
import type { HttpServer } from "../../src/http/server.ts";
import { addDelivery, addMessage, get, makeFixture, startServer, type Fixture } from "./fixture.ts";

const XSS = `<img src=x onerror=alert(1)>`;
let fx: Fixture;
let server: HttpServer;

beforeEach(async () => {
  fx = makeFixture();
  server = await startServer(fx, { hostname: `<b>mx</b>` });
}, 60_000);
afterEach(async () => {
  await server.stop();
  fx.cleanup();
}, 60_000);

test("escapeHtml covers the five characters that matter in content and attributes", () => {
  expect(escapeHtml(`<a href="x" title='y'>&amp;</a>`)).toBe("&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;");
  expect(escapePromLabel('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd');
});

test("escapeHtml makes controls but tab and LF a '?' and CR a LF, as terminals would act on them", () => {
  expect(escapeHtml("a\x1b]0;t\x07b\x1b[2Jc\r\nd\re\tf\x9bg\x7fh\x00i\u202ej")).toBe("a?]0;t?b?[2Jc\nd\ne\tf?g?h?i\u202ej");
});

test("a hostile subject, sender, relay error, category and rules error render as text", async () => {
  const id = addMessage(fx.db, { subject: XSS, mailFrom: `"<script>alert(2)</script>"@evil.example`, action: "forward", category: `"><svg onload=alert(3)>` });
  addDelivery(fx.db, id, {
    state: "failed",
    target: JSON.stringify([`</td><script>alert(4)</script>@x.example`]),
    lastError: `550 5.1.1 <iframe src="javascript:alert(5)"></iframe> user unknown`,
    category: `"><svg onload=alert(3)>`,
  });
  fx.status.rulesStatus = { ...fx.status.rulesStatus, version: `v1<style>`, lastError: `bad regex </dd><script>alert(6)</script>`, lastErrorAt: Date.now() };
  const html = await (await get(server, "/stats")).text();
  expect(html).toContain("&lt;img src=x onerror=alert(1)&gt;");
  expect(html).toContain("&quot;&lt;script&gt;alert(2)&lt;/script&gt;&quot;@evil.example");
  expect(html).toContain("&lt;/td&gt;&lt;script&gt;alert(4)&lt;/script&gt;@x.example");
  expect(html).toContain("&lt;iframe src=&quot;javascript:alert(5)&quot;&gt;&lt;/iframe&gt;");
  expect(html).toContain("&lt;/dd&gt;&lt;script&gt;alert(6)&lt;/script&gt;");
  expect(html).toContain('data-category="&quot;&gt;&lt;svg onload=alert(3)&gt;"');
  expect(html).toContain("&lt;b&gt;mx&lt;/b&gt;");
  expect(html).not.toContain("<img");
  expect(html).not.toContain("<iframe");
  expect(html).not.toContain("<svg onload");
  expect(html).not.toContain("<b>mx");
  // Exactly one <script> element: ours.
  expect(html.match(/<script/g)?.length).toBe(1);
  expect(html.match(/<style/g)?.length).toBe(1);

  const json = (await (await get(server, "/stats.json")).json()) as { failedDeliveries: { subject: string }[] };
  expect(json.failedDeliveries[0]?.subject).toBe(XSS);
});

test("hostile categories are escaped in metrics labels", async () => {
  addMessage(fx.db, { action: "archive", category: 'a"b\\c\nd' });
  const text = await (await get(server, "/metrics")).text();
  expect(text).toContain('mailgw_messages_total{action="archive",category="a\\"b\\\\c\\nd"} 1');
});
