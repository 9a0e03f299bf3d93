/**
 * A receiver's reply is shown (queue list, the stats page, the log) with the URLs in it
 * redacted as the rule's URL is (README: Webhooks): a redirect's page names its target, and a
 * receiver moved to https:// answers a post to http://…/hook?token=… with a page naming
 * https://…/hook?token=… (Flask/Werkzeug: a link, Express: "Redirecting to …"). Before, the
 * Location was redacted but the page's copy of it put the token on the stats page and in the
 * log. Through the real `mailgw serve` (from source) and a Bun.serve receiver on loopback.
 */
import { afterEach, expect, test } from "bun:test";
import { note, sendMessage } from "../helpers/webhook-messages.ts";
import { queueList, serveEachTest, until } from "../smtp/serve-process.ts";

const serve = serveEachTest();
const TOKEN = "S3cretReplyTok";
const TARGET = `https://hooks.example/inbound?token=${TOKEN}`;

let receiver: ReturnType<typeof Bun.serve> | null = null;
afterEach(() => receiver?.stop(true));

function startReceiver(): number {
  receiver = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      await req.arrayBuffer();
      const path = new URL(req.url).pathname;
      if (path === "/flask") {
        const page = `<!doctype html>\n<html lang=en>\n<title>Redirecting...</title>\n<h1>Redirecting...</h1>\n<p>You should be redirected automatically to the target URL: <a href="${TARGET}">${TARGET}</a>. If not, click the link.\n`;
        return new Response(page, { status: 308, headers: { location: TARGET, "content-type": "text/html; charset=utf-8" } });
      }
      if (path === "/express") return new Response(`Permanent Redirect. Redirecting to ${TARGET}`, { status: 308, headers: { location: TARGET, "content-type": "text/plain" } });
      return new Response(`no route for POST http://u:${TOKEN}@127.0.0.1/gone?key=${TOKEN}`, { status: 404, headers: { "content-type": "text/plain" } });
    },
  });
  return receiver.port as number;
}

test("a receiver's reply naming URLs with tokens: redacted in queue list, /stats, /stats.json and the log", async () => {
  const port = startReceiver();
  const rule = (name: string, path: string) =>
    `  - { name: ${name}, category: c, action: webhook, url: "http://127.0.0.1:${port}/${path}?token=${TOKEN}", conditions: [{ field: rcpt, operator: equals, value: ${name}@company.com }] }\n`;
  const s = await serve({}, `domains: [company.com]\ndefault: { action: drop, category: default }\nrules:\n${rule("flask", "flask")}${rule("express", "express")}${rule("gone", "gone")}`);
  for (const name of ["flask", "express", "gone"]) await sendMessage(s.smtpPort, `${name}@company.com`, note(name));
  await until("three failed posts", async () => (await queueList(s.dir, "failed")).length === 3, 15_000);

  const failed = await queueList(s.dir, "failed");
  for (const e of failed.filter((x) => x.rule !== "gone")) {
    expect(e.lastError).toContain("HTTP 308 Permanent Redirect to https://hooks.example/inbound");
    expect(e.lastError).toContain("redirects are not followed");
  }
  expect(failed.find((x) => x.rule === "gone")?.lastError).toContain("HTTP 404 Not Found: no route for POST http://127.0.0.1/gone");
  const stats = await (await fetch(`${s.httpUrl}/stats`)).text();
  const json = await (await fetch(`${s.httpUrl}/stats.json`)).text();
  expect(stats).toContain("Permanent Redirect");
  for (const [where, text] of [["queue list", JSON.stringify(failed)], ["/stats", stats], ["/stats.json", json], ["log", JSON.stringify(s.logs)]] as const) {
    expect({ where, leaks: text.includes(TOKEN) }).toEqual({ where, leaks: false });
  }
}, 60_000);
