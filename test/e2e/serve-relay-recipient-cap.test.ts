/**
 * The compiled `mailgw serve` forwarding to more `forward_to` addresses than the relay takes in
 * one message (SES 50, Gmail 100, Postfix smtpd_recipient_limit): the relay answers the RCPT
 * over its cap with `452 4.5.3 Too many recipients`. RFC 5321 4.5.3.1.10: the client sends the
 * rest in another transaction. Expected: every address gets one copy at once, not the rest a
 * retry backoff (QUEUE_RETRY_BASE_SECONDS, doubling per batch) later.
 */
import { afterAll, afterEach, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import nodemailer from "nodemailer";
import { relayVars, startRelay } from "../delivery/helpers.ts";
import { cleanupBinary, queueList, serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";

const FORWARD_TO = ["a@forward.example", "b@forward.example", "c@forward.example", "d@forward.example", "e@forward.example"];
const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: fwd, priority: 10, category: ops, action: forward, forward_to: [${FORWARD_TO.join(", ")}], conditions: [{ field: size, operator: gt, value: 0 }] }
`;

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);
afterAll(() => cleanupBinary(), 60_000);

test("a relay taking 2 recipients per message: 5 forward_to addresses get one copy each at once, in 3 transactions", async () => {
  const relay = await startRelay();
  cleanups.push(() => relay.close());
  relay.maxRecipients = 2;
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), RULES);
  const s: ServeProcess = await startServe("binary", dir, { ...relayVars(relay), QUEUE_RETRY_BASE_SECONDS: "60" });
  cleanups.push(async () => {
    if (s.proc.exitCode === null) await s.stop("SIGKILL");
  });
  const t = nodemailer.createTransport({ host: "127.0.0.1", port: s.smtpPort, secure: false, ignoreTLS: true });
  await t.sendMail({ from: "alice@example.org", to: "bob@company.com", subject: "to the list", text: "hello all" });
  t.close();
  const deadline = Date.now() + 15_000;
  while (relay.received.flatMap((m) => m.to).length < FORWARD_TO.length && Date.now() < deadline) await Bun.sleep(50);
  await Bun.sleep(500); // a duplicate would arrive now
  expect(relay.received.map((m) => m.to)).toEqual([FORWARD_TO.slice(0, 2), FORWARD_TO.slice(2, 4), FORWARD_TO.slice(4)]);
  expect(await queueList(s.dir)).toEqual([]);
  expect(s.logs.filter((l) => l.msg === "failed")).toEqual([]);
  expect(await s.stop()).toBe(0);
}, 60_000);
