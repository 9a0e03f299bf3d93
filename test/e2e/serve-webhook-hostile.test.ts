/**
 * A hostile message posted to a webhook does not hold up the deliveries behind it, through the
 * compiled dist/mailgw with a `webhook` default and a Bun.serve receiver on loopback: the
 * payload builder hands postal-mime the body within a budget (src/act/webhook-payload.ts
 * WEBHOOK_PARSE_MAX_*: lines, "--" lines, padded base64 units), so the hostile post goes out
 * partly decoded (`parseError` says so, `raw` whole) and an ordinary message sent half a second
 * later is posted within seconds.
 * Measured before the caps: the payload of 20 MB of bare newlines inside a message/rfc822 part
 * took ~23 s to build in the delivery thread, and the ordinary post arrived ~23 s late.
 * Ports: picked in 27000-27499 (loopback).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { WebhookPayload } from "../../src/act/webhook-payload.ts";
import { pickPorts } from "../helpers/real-proxies.ts";
import { sendMessage } from "../helpers/webhook-messages.ts";
import { HOSTILE_CASES } from "../parse/hostile-cases.ts";
import { cleanupBinary, serveDir, startServe, until, type ServeProcess } from "../smtp/serve-process.ts";

/** The ordinary post may come this late after its 250: guards a stall of tens of seconds, not a slow machine. */
const ORDINARY_POST_MAX_MS = 8_000;

const CRLF = Buffer.from("\r\n");
const posts = new Map<string, { at: number; post: WebhookPayload }>();
let receiver: ReturnType<typeof Bun.serve>;
let serve: ServeProcess;
let dir = "";

beforeAll(async () => {
  const [hookPort, smtpPort, httpPort] = await pickPorts(3, 27000, 500);
  receiver = Bun.serve({
    port: hookPort,
    hostname: "127.0.0.1",
    maxRequestBodySize: 1 << 28,
    async fetch(req) {
      const post = (await req.json()) as WebhookPayload;
      posts.set(post.id, { at: Date.now(), post });
      return new Response("ok");
    },
  });
  dir = serveDir();
  await writeFile(join(dir, "rules.yaml"), `domains: [company.com]\ndefault: { action: webhook, category: default, url: "http://127.0.0.1:${receiver.port}/in" }\nrules: []\n`);
  serve = await startServe("binary", dir, { SMTP_PORT: String(smtpPort), HTTP_PORT: String(httpPort) });
}, 60_000);

afterAll(async () => {
  await serve?.stop();
  receiver?.stop(true);
  cleanupBinary();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 30_000);

test("an ordinary post is not held up behind the payload of a hostile message", async () => {
  // Its body ends with a bare LF: a CRLF before the final dot, or the dot is content.
  const hostile = HOSTILE_CASES.find((c) => c.name === "newlines-in-rfc822-20mb")!;
  const hostileId = await sendMessage(serve.smtpPort, "hook@company.com", { name: hostile.name, mailFrom: "a@sender.example", bytes: Buffer.concat([hostile.build(), CRLF]), expected: {} });
  await Bun.sleep(500);
  const ordinary = Buffer.from("From: a@sender.example\r\nTo: hook@company.com\r\nSubject: ordinary\r\n\r\nhello\r\n");
  const ordinaryId = await sendMessage(serve.smtpPort, "hook@company.com", { name: "ordinary", mailFrom: "a@sender.example", bytes: ordinary, expected: {} });
  const accepted = Date.now();
  await until("the ordinary post", async () => posts.has(ordinaryId), 60_000);
  const late = posts.get(ordinaryId)!.at - accepted;
  expect(late).toBeLessThan(ORDINARY_POST_MAX_MS);
  expect(posts.get(ordinaryId)!.post.text).toBe("hello\n");
  // The hostile one is posted too, partly decoded and saying so, with its bytes whole.
  await until("the hostile post", async () => posts.has(hostileId), 60_000);
  const post = posts.get(hostileId)!.post;
  expect(post.parseError).toContain("lines to decode, the rest not decoded");
  expect(Buffer.from(post.raw, "base64").includes(Buffer.from("Subject: in\r\n\r\n\n\n\n"))).toBe(true);
}, 150_000);
