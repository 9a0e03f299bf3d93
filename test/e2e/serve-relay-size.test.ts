/**
 * The real serve forwarding through a relay that advertises a smaller SIZE than
 * MAX_MESSAGE_SIZE_MB (a Postfix smarthost's default 10,240,000 bytes against mailgw's 25 MB):
 * once a session told serve the relay's limit, a forward too big for it is refused at DATA with
 * 552 5.3.4 instead of 250 followed by a permanent failure at the relay; archived mail of that
 * size and smaller forwards go on, and the admin is told why in the log. Also, without any Postfix:
 * a forward carrying 48 Received: lines is refused 554 5.4.6 at DATA (its relay would see 50 and
 * refuse it as a loop after our 250), while archived mail with as many is taken.
 */
import { afterAll, expect, test } from "bun:test";
import { SMTPServer } from "smtp-server";
import { RawClient, greet, sendMail } from "../smtp/helpers.ts";
import { serveEachTest } from "../smtp/serve-process.ts";
import { queueList, waitUntil } from "../helpers/interop.ts";

const RELAY_SIZE = 40_000;
const received: string[] = [];
const relay = new SMTPServer({
  logger: false,
  authOptional: true,
  size: RELAY_SIZE,
  disabledCommands: ["STARTTLS", "AUTH"],
  onData(stream, _session, cb) {
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      received.push(/^Subject: (.*)$/m.exec(Buffer.concat(chunks).toString("latin1"))?.[1]?.trim() ?? "");
      cb();
    });
  },
});
await new Promise<void>((ok) => relay.listen(0, "127.0.0.1", ok));
const relayPort = (relay.server.address() as { port: number }).port;
afterAll(() => new Promise<void>((ok) => relay.close(() => ok())));

const serve = serveEachTest();
const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: fwd, priority: 10, action: forward, forward_to: [inbox@fwd.example], conditions: [{ field: subject, operator: starts_with, value: "fwd" }] }
`;

const message = (subject: string, bytes: number) => `From: a@sender.example\r\nTo: b@company.com\r\nSubject: ${subject}\r\n\r\n${`${"y".repeat(76)}\r\n`.repeat(Math.ceil(bytes / 78))}`;

async function send(port: number, subject: string, bytes: number): Promise<string> {
  const c = await RawClient.connect(port);
  await greet(c);
  const reply = await sendMail(c, "b@company.com", message(subject, bytes));
  await c.cmd("QUIT");
  return reply;
}

test("a forward too big for the relay's advertised SIZE gets 552 at DATA once the relay was seen; archive and smaller forwards go on", async () => {
  const s = await serve({ RELAY_SMTP_HOST: "127.0.0.1", RELAY_SMTP_PORT: String(relayPort), RELAY_SMTP_SECURE: "none" }, RULES);
  // Before any session to the relay its limit is unknown: taken, then failed at the relay.
  expect(await send(s.smtpPort, "fwd before", 45_000)).toStartWith("250 ");
  expect(await send(s.smtpPort, "fwd small", 2_000)).toStartWith("250 ");
  await waitUntil("the small forward delivered", () => received.includes("fwd small"));
  const warning = await s.waitForLog((l) => typeof l.msg === "string" && l.msg.startsWith("the relay takes smaller messages"));
  expect(warning.relay_size_bytes).toBe(RELAY_SIZE);
  await Bun.sleep(1100); // the intake reads the recorded limit at most once a second

  expect(await send(s.smtpPort, "fwd big", 45_000)).toStartWith("552 5.3.4 Message too big for the relay");
  expect(await send(s.smtpPort, "archived big", 45_000)).toStartWith("250 ");
  expect(await send(s.smtpPort, "fwd small again", 2_000)).toStartWith("250 ");
  await waitUntil("the second small forward delivered", () => received.includes("fwd small again"));
  expect(received).not.toContain("fwd big");
  expect(received).not.toContain("fwd before");
  const failed = (await queueList(s.dir, "failed")).map((e) => e.lastError);
  expect(failed).toEqual([expect.stringContaining("552 5.3.4")]);
  // Counted as a size refusal (refusals reach the database every 2 s), not as a received forward.
  type Totals = { refused: Record<string, number>; byAction: Record<string, number> };
  let today: Totals | null = null;
  const read = async () => (today = ((await (await fetch(`${s.httpUrl}/stats.json`)).json()) as { totals: { today: Totals } }).totals.today);
  for (let i = 0; i < 50 && (await read()).refused.too_big !== 1; i++) await Bun.sleep(200);
  expect(today).toMatchObject({ refused: { too_big: 1 }, byAction: { forward: 3, archive: 1 } });
  expect(await s.stop()).toBe(0);
}, 60_000);

test("a forward with 48 Received: lines gets 554 5.4.6 at DATA; archived mail with 48 is taken; the server goes on", async () => {
  const s = await serve({ RELAY_SMTP_HOST: "127.0.0.1", RELAY_SMTP_PORT: String(relayPort), RELAY_SMTP_SECURE: "none" }, RULES);
  const hops = (n: number, subject: string) =>
    `${"Received: from a.example by b.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n".repeat(n)}From: a@sender.example\r\nTo: b@company.com\r\nSubject: ${subject}\r\n\r\nhi\r\n`;
  const sendRaw = async (text: string): Promise<string> => {
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    const reply = await sendMail(c, "b@company.com", text);
    await c.cmd("QUIT");
    return reply;
  };
  expect(await sendRaw(hops(48, "fwd looped"))).toStartWith("554 5.4.6 ");
  expect(await sendRaw(hops(47, "fwd near"))).toStartWith("250 ");
  expect(await sendRaw(hops(48, "archived looped"))).toStartWith("250 ");
  await waitUntil("the 47-hop forward delivered", () => received.includes("fwd near"));
  expect(received).not.toContain("fwd looped");
  expect(await s.stop()).toBe(0);
}, 60_000);
