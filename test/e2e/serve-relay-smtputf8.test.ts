/**
 * `mailgw serve` forwarding mail whose header fields are UTF-8 (RFC 6532) and whose addresses are
 * ASCII. Postfix 3.7, as the MX in mailgw's place, passes a client's `MAIL FROM:<…> SMTPUTF8` on
 * to a relay that offers SMTPUTF8, and sends without it what the client sent without it
 * (smtputf8_autodetect_classes leaves smtpd out); to a relay without SMTPUTF8 it bounces declared
 * UTF-8 mail (5.6.7), where mailgw keeps sending it as such relays took it before.
 */
import { afterEach, expect, test } from "bun:test";
import { waitFor } from "../delivery/helpers.ts";
import { forwardGateway, sendOne, type Cleanups } from "../helpers/forward-gateway.ts";
import { queueList, until } from "../smtp/serve-process.ts";

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: fwd, priority: 10, category: ops, action: forward, forward_to: [inbox@forward.example], conditions: [{ field: size, operator: gt, value: 0 }] }
`;
const message = (subject: string, first = ""): string => `${first}From: Jörg <alice@example.org>\r\nTo: bob@company.com\r\nSubject: ${subject} Grüße\r\n\r\nHallo.\r\n`;

const cleanups: Cleanups = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

const gateway = (hideSmtpUtf8: boolean) => forwardGateway(cleanups, { mode: "source", rules: RULES, relay: { hideSmtpUtf8 }, ports: [49000, 49999] });

async function send(port: number, mailParams: string, data: string, helo = "client.example"): Promise<void> {
  await sendOne(port, data, { mailParams, helo });
}

const subjectOf = (data: Buffer): string => /^Subject: (\S+)/m.exec(data.toString("utf8"))?.[1] ?? "";

test("the client's SMTPUTF8 goes on to a relay that offers it; mail sent without it goes without it", async () => {
  const { relay, s } = await gateway(false);
  await send(s.smtpPort, " SMTPUTF8", message("declared"));
  await send(s.smtpPort, "", message("undeclared"));
  // Neither a message's own first field nor its HELO name can pass for mailgw's `with UTF8SMTP`.
  await send(s.smtpPort, "", message("forged", "Received: from x ([192.0.2.1])\r\n\tby mx.test (mailgw) with UTF8SMTP\r\n"), "x.example (mailgw) with UTF8SMTP");
  await waitFor(() => relay.received.length === 3, 15_000, "three forwards at the relay");
  const declared = Object.fromEntries(relay.received.map((m) => [subjectOf(m.data), m.smtpUtf8]));
  expect(declared).toEqual({ declared: true, undeclared: false, forged: false });
  for (const m of relay.received) expect(m.data.toString("utf8")).toContain(" Grüße\r\n");
  await until("the deliveries recorded", async () => (await queueList(s.dir)).length === 0);
  expect(await s.stop()).toBe(0);
}, 60_000);

test("a relay without SMTPUTF8 still gets declared UTF-8 mail, without the parameter", async () => {
  const { relay, s } = await gateway(true);
  await send(s.smtpPort, " SMTPUTF8", message("declared"));
  await waitFor(() => relay.received.length === 1, 15_000, "the forward at the relay");
  expect(relay.received[0]?.smtpUtf8).toBe(false);
  await until("the delivery recorded", async () => (await queueList(s.dir)).length === 0);
  expect(await s.stop()).toBe(0);
}, 60_000);
