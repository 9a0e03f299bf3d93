/**
 * "250 here, refused by the relay after": what the real `mailgw serve` answers 250 for and
 * forwards must be taken by a Postfix smarthost with its defaults (a private instance relaying to
 * a raw sink in this process, test/helpers/raw-sink.ts), with the envelope sender the client
 * gave, and the bytes mailgw archived. Otherwise mailgw must refuse in the SMTP session, as
 * Postfix's own smtpd would, so the sender gets the bounce rather than a `failed` forward nobody
 * sees. Variants: envelope senders of every shape mailgw takes, and Received: counts at Postfix's
 * hopcount_limit (an archive decision keeps serve's own loop limit: test/cli-test's dry run). Needs root and Postfix ≥ 3.4; skips with the reason printed otherwise.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePortsIn, testMessage, waitUntil } from "../helpers/interop.ts";
import { postfixSkipReason, startPostfix, type Postfix } from "../helpers/postfix.ts";
import { mailFromAddress, startRawSink, type RawSink, type Sunk } from "../helpers/raw-sink.ts";
import { normalizeMailbox } from "../../src/rules/address.ts";
import { RawClient, greet } from "../smtp/helpers.ts";
import { archivedCopy, queueList, serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";

const SKIP = postfixSkipReason();
if (SKIP) console.warn(`skip: mailgw forward → Postfix smarthost acceptance tests: ${SKIP}`);

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - name: forward-all
    priority: 10
    action: forward
    archive: true
    forward_to: [ops@forward.example]
    conditions:
      - { field: size, operator: gt, value: 0 }
`;

let sink: RawSink | null = null;
let postfix: Postfix | null = null;
let serve: ServeProcess | null = null;
let relayPort = 0;

beforeAll(async () => {
  if (SKIP) return;
  const [sinkPort = 0, smarthostPort = 0] = await freePortsIn(2, 45000, 45499);
  relayPort = smarthostPort;
  sink = await startRawSink(sinkPort);
  postfix = await startPostfix({
    services: [`127.0.0.1:${relayPort} inet n - n - - smtpd`],
    main: {
      myhostname: "relay.test",
      // A smarthost that relays for its clients (SASL and STARTTLS are interop-postfix-relay's
      // subject); every other smtpd and cleanup setting is Postfix's default.
      mynetworks: "127.0.0.0/8",
      smtpd_relay_restrictions: "permit_mynetworks, reject",
      relayhost: `[127.0.0.1]:${sinkPort}`,
      smtp_tls_security_level: "none",
      // mailgw on loopback is no local client whose headers Postfix would rewrite.
      local_header_rewrite_clients: "",
    },
  });
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), RULES);
  serve = await startServe("source", dir, { RELAY_SMTP_HOST: "127.0.0.1", RELAY_SMTP_PORT: String(relayPort), RELAY_SMTP_SECURE: "none", QUEUE_RETRY_BASE_SECONDS: "0.5" });
}, 60_000);

afterAll(async () => {
  if (serve) expect(await serve.stop()).toBe(0);
  await postfix?.stop();
  await sink?.close();
}, 60_000);

interface Sent {
  /** mailgw's replies to MAIL and to the end of data (or the refusal that ended it). */
  mail: string;
  final: string | null;
  id: string | null;
}

/** One message through mailgw (RCPT bob@company.com) with `mailFrom` as the MAIL argument. */
async function sendThrough(mailFrom: string, raw: Buffer, params = ""): Promise<Sent> {
  const c = await RawClient.connect((serve as ServeProcess).smtpPort);
  try {
    await greet(c, "client.test");
    const mail = await c.cmd(`MAIL FROM:<${mailFrom}>${params}`);
    if (!mail.startsWith("250")) return { mail, final: null, id: null };
    expect(await c.cmd("RCPT TO:<bob@company.com>")).toStartWith("250");
    expect(await c.cmd("DATA")).toStartWith("354");
    c.write(Buffer.concat([Buffer.from(raw.toString("latin1").replace(/^\./gm, ".."), "latin1"), Buffer.from(".\r\n")]));
    const final = await c.reply(30_000);
    await c.cmd("QUIT").catch(() => "");
    return { mail, final, id: /^250 2\.0\.0 Queued as (\S+)/.exec(final)?.[1] ?? null };
  } finally {
    c.end();
  }
}

/** What became of a forward: delivered, failed or deferred (its log line's error with it). */
async function fateOf(id: string): Promise<string> {
  const line = await (serve as ServeProcess).waitForLog((l) => l.id === id && ["delivered", "failed", "deferred"].includes(String(l.msg)), 20_000);
  return line.msg === "delivered" ? "delivered" : `${String(line.msg)}: ${String(line.error)}`;
}

/** What reached the sink of the message mailgw queued as `id` (its Received: line names the id). */
async function sunkCopy(id: string): Promise<Sunk> {
  const find = (): Sunk | undefined => (sink as RawSink).sunk.find((s) => s.data.includes(`id ${id} for <bob@company.com>`));
  await waitUntil(`message ${id} at the sink`, () => find() !== undefined, 20_000, () => (postfix as Postfix).tail(15));
  return find() as Sunk;
}

/** A local part as the mailbox it names: quotes and quoted-pair backslashes taken away. */
function mailbox(address: string): string {
  const at = address.lastIndexOf("@");
  const local = address.slice(0, at);
  const bare = local.startsWith('"') && local.endsWith('"') ? local.slice(1, -1).replace(/\\(.)/g, "$1") : local;
  return `${bare}@${address.slice(at + 1).toLowerCase()}`;
}

describe.skipIf(SKIP !== null)("mailgw serve forwarding through a Postfix smarthost: a 250 here is a 250 there", () => {
  // Every shape of sender mailgw's lenient parser takes or refuses; each is either refused at MAIL
  // or relayed by Postfix with the same mailbox. Postfix reads `(` as a comment and `\` as an
  // escape (`a(b@x` went out as a@relay.test, `(b)a@x` as a@x, `a\b@x` as ab@x) and refuses a
  // local part starting with `-` (501): those got our 250 and then were lost or changed.
  const senders = [
    "a@sender.example", '"john smith"@sender.example', '"a,b;c"@sender.example', '"a\\"b"@sender.example', '""@sender.example',
    ".a@sender.example", "a.@sender.example", "a..b@sender.example", "a_b+c=d/e@sender.example", "SRS0=HH=TT=example.org=al@sender.example",
    "a%b.example@sender.example", "b.example!a@sender.example", "a)b@sender.example", "a:b@sender.example", "a]b@sender.example",
    "a-@sender.example", "o'brien@sender.example", "A.B@SENDER.EXAMPLE", "a@[192.0.2.1]", "a@[IPv6:2001:db8::1]", "a@s_x.example",
    "a@xn--bcher-kva.example", `${"a".repeat(239)}@sender.example`, "",
    // Refused since Postfix relays them as another address or refuses them.
    "a(b)c@sender.example", "a(b@sender.example", "(b)a@sender.example", "a.(b)@sender.example", "a\\b@sender.example",
    "-a@sender.example", '"-a"@sender.example', '"\\-a"@sender.example',
  ];

  test("each sender mailgw takes is relayed with the same mailbox and the archived bytes; the others get 501 at MAIL", async () => {
    const outcomes: Record<string, string> = {};
    const relayed: { sender: string; id: string; raw: Buffer }[] = [];
    for (const [i, sender] of senders.entries()) {
      const raw = testMessage(`sender ${i}`, `body ${i}\r\n`);
      const sent = await sendThrough(sender, raw);
      if (sent.id === null) outcomes[sender] = sent.final ?? sent.mail;
      else relayed.push({ sender, id: sent.id, raw });
    }
    for (const { sender, id } of relayed) outcomes[sender] = await fateOf(id);
    for (const { sender, id } of relayed.filter(({ sender }) => outcomes[sender] === "delivered")) {
      const copy = await sunkCopy(id);
      const relayedAs = mailFromAddress(copy.mail);
      if (sender === "") expect(relayedAs).toBe("");
      else if (mailbox(relayedAs) !== mailbox(sender)) outcomes[sender] = `relayed as <${relayedAs}>`;
      // Postfix's Received: line, then exactly what mailgw archived (its own Received: on top).
      const text = copy.data.toString("latin1");
      const afterRelayLine = Buffer.from(text.slice(text.search(/\r\n(?![ \t])/) + 2), "latin1");
      expect(Buffer.compare(afterRelayLine, (await archivedCopy((serve as ServeProcess).dir, id)) as Buffer)).toBe(0);
    }
    const refusedAtMail = new Set(senders.slice(senders.indexOf("a(b)c@sender.example")));
    const expected = Object.fromEntries(senders.map((s) => [s, refusedAtMail.has(s) ? "501 5.1.7 Error: Bad sender address syntax" : "delivered"]));
    expect(outcomes).toEqual(expected);
    expect(await queueList((serve as ServeProcess).dir, "failed,deferred")).toEqual([]);
  }, 120_000);

  // Postfix counts the Received: fields with mailgw's and its own, and refuses at hopcount_limit
  // (50): 48 to 50 passed serve's loop check (more than 50), got 250, and then the relay's 554.
  test("Received: counts at the relay's hop limit: each forward is refused at DATA (554 5.4.6) or delivered", async () => {
    const hops = (n: number): string => Array.from({ length: n }, (_, i) => `Received: from h${i}.example by h${i + 1}.example; Mon, 23 Nov 2026 10:00:00 +0000\r\n`).join("");
    const outcomes: Record<number, string> = {};
    for (const n of [46, 47, 48, 49, 50]) {
      const sent = await sendThrough("a@sender.example", Buffer.concat([Buffer.from(hops(n)), testMessage(`hops ${n}`, "x\r\n")]));
      outcomes[n] = sent.id === null ? (sent.final ?? sent.mail) : await fateOf(sent.id);
      if (sent.id !== null && outcomes[n] === "delivered") await sunkCopy(sent.id);
    }
    const loop = "554 5.4.6 Too many hops (Received headers), mail loop suspected";
    expect(outcomes).toEqual({ 46: "delivered", 47: "delivered", 48: loop, 49: loop, 50: loop });
    expect(await queueList((serve as ServeProcess).dir, "failed,deferred")).toEqual([]);
  }, 60_000);

  // forward_to comes from rules.yaml: an address the relay refuses there fails every forward of
  // the rule after our 250. Postfix refuses a recipient starting with '-'; so does rules lint.
  test("forward_to addresses: one the smarthost refuses at RCPT is refused by rules lint", async () => {
    const c = await RawClient.connect(relayPort);
    try {
      await greet(c, "mx.test");
      expect(await c.cmd("MAIL FROM:<a@sender.example>")).toStartWith("250");
      const replies = Object.fromEntries(await Promise.all(["-ops@forward.example", "ops-@forward.example", "o-ps@forward.example"].map(async (a) => [a, (await c.cmd(`RCPT TO:<${a}>`)).slice(0, 3)] as const)));
      expect(replies).toEqual({ "-ops@forward.example": "501", "ops-@forward.example": "250", "o-ps@forward.example": "250" });
      for (const [address, reply] of Object.entries(replies)) expect({ address, lint: normalizeMailbox(address) !== null }).toEqual({ address, lint: reply === "250" });
    } finally {
      c.end();
    }
  });
});
