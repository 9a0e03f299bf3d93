/**
 * Interop with a real Postfix as the sending MTA (what Gmail or a company's Postfix does when
 * it delivers to our MX): a private Postfix instance (test/helpers/postfix.ts) takes mail on its
 * own smtpd and relays it to the real `mailgw serve` (relayhost, smtp_tls_security_level =
 * encrypt against mailgw's self-signed certificate). Postfix's log (debug_peer_list for the
 * mailgw peer: the whole SMTP dialogue) shows what it did and what it concluded:
 * - STARTTLS, PIPELINING (MAIL, RCPT, DATA in one go), BODY=8BITMIME, SMTPUTF8; mailgw archives
 *   one copy: its Received:, Postfix's Received:, then the injected bytes exactly;
 * - a reject rule → status=bounced with mailgw's 550 5.7.1 text; a recipient outside `domains`
 *   → 550 5.7.1 at RCPT, the other recipient of the same message still delivered;
 * - 451 4.3.0 (DATA_DIR full, on a tmpfs) and 451 4.7.1 (rate limit, at MAIL) → status=deferred,
 *   the message stays in Postfix's queue; after the condition clears, `postqueue -f` → delivered,
 *   exactly one archived copy (no loss, no duplicate).
 * Needs root and Postfix ≥ 3.4; skips with the reason printed otherwise.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { MIME_8BIT, escapeRe as esc, leadingFields, submit, testMessage } from "../helpers/interop.ts";
import { startMxGateway, type MxGateway } from "../helpers/mx-gateway.ts";
import { freePorts, postfixSkipReason, startPostfix, type Postfix } from "../helpers/postfix.ts";

const SKIP = postfixSkipReason();
if (SKIP) console.warn(`skip: Postfix → mailgw interop tests: ${SKIP}`);

let postfix: Postfix | null = null;
let gateway: MxGateway | null = null;
let ports = { postfix: 0, smtp: 0, http: 0 };

beforeAll(async () => {
  if (SKIP) return;
  const [p, s, h] = await freePorts(3);
  ports = { postfix: p ?? 0, smtp: s ?? 0, http: h ?? 0 };
  gateway = await startMxGateway({ smtp: ports.smtp, http: ports.http });
  postfix = await startPostfix({
    services: [`127.0.0.1:${ports.postfix} inet n - n - - smtpd`],
    main: {
      myhostname: "postfix.test",
      mynetworks: "127.0.0.0/8",
      smtpd_relay_restrictions: "permit_mynetworks, reject",
      relayhost: `[127.0.0.1]:${ports.smtp}`,
      smtp_tls_security_level: "encrypt",
      smtp_tls_loglevel: "1",
      // The whole SMTP dialogue with mailgw in the log (and with our injecting client).
      debug_peer_list: "127.0.0.1",
      // Headers exactly as injected (no Postfix rewriting), and bounces to our senders vanish.
      local_header_rewrite_clients: "",
      transport_maps: "inline:{sender.example=discard:}",
    },
  });
}, 60_000);

afterAll(async () => {
  await postfix?.stop();
  await gateway?.close();
}, 60_000);

const pf = (): Postfix => postfix as Postfix;
const gw = (): MxGateway => gateway as MxGateway;
const RCPT = "bob@company.com";

/** A message with a unique Message-ID and Date (so Postfix adds nothing to it). */
function message(subject: string, body: string, from?: string): Buffer {
  return testMessage(subject, body, { from, headers: MIME_8BIT });
}

/** Submits to Postfix's smtpd; returns Postfix's queue id. */
async function inject(raw: Buffer, rcpts = [RCPT], from = "alice@sender.example", params = ""): Promise<string> {
  const reply = await submit(ports.postfix, { raw, rcpts, from, params });
  const id = /queued as ([0-9A-F]+)/.exec(reply)?.[1];
  if (!id) throw new Error(`postfix refused the message: ${reply}`);
  return id;
}

/** `<qid>: to=<rcpt>, relay=<mailgw>, … status=<status> (<text>)` in Postfix's log. */
function statusLine(qid: string, rcpt: string, status: string, text: string): RegExp {
  return new RegExp(`postfix/smtp\\[(\\d+)\\]: ${qid}: to=<${esc(rcpt)}>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${ports.smtp}, .*status=${status} \\(${text}\\)$`);
}

/** What Postfix's smtp process `pid` said (">") and heard ("<") talking to mailgw, in order. */
function dialogue(pid: string, mark: number): string[] {
  const peer = `127.0.0.1[127.0.0.1]:${ports.smtp}: `;
  return pf()
    .linesSince(mark)
    .filter((l) => l.includes(`postfix/smtp[${pid}]: `))
    .map((l) => /: ([<>]) 127\.0\.0\.1\[127\.0\.0\.1\]:\d+: (.*)$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null && m[0].includes(peer))
    .map((m) => `${m[1]} ${m[2]}`);
}

async function waitForQueueEmpty(ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (pf().queued().length > 0) {
    if (Date.now() > deadline) throw new Error(`postfix queue not empty: ${JSON.stringify(pf().queued())}`);
    await Bun.sleep(100);
  }
}

describe.skipIf(SKIP !== null)("Postfix (sending MTA) → mailgw serve", () => {
  test("STARTTLS, PIPELINING, 8BITMIME: one archived copy, the injected bytes after the two Received: lines", async () => {
    const mark = pf().mark();
    const raw = message("Grüße 8bit", "Hallö Wörld, ½ € 日本\r\n.leading dot stays\r\nlast line\r\n");
    const qid = await inject(raw, [RCPT], "alice@sender.example", " BODY=8BITMIME");
    const sent = await pf().waitForLog(statusLine(qid, RCPT, "sent", "250 2\\.0\\.0 Queued as (\\S+)"), mark);
    const [, pid = "", id = ""] = sent;

    const copies = gw().archivedCopies(raw);
    expect(copies).toHaveLength(1);
    const { fields, rest } = leadingFields(copies[0] as Buffer, 2);
    expect(fields[0]).toMatch(/^Received: from postfix\.test \(\[127\.0\.0\.1\]\)\r\n\tby mx\.test \(mailgw\) with ESMTPS\r\n\t\(version=TLSv1\.[23] /);
    expect(fields[0]).toContain(`id ${id} for <${RCPT}>`);
    expect(fields[1]).toMatch(new RegExp(`^Received: from client\\.test \\(localhost \\[127\\.0\\.0\\.1\\]\\)\r\n\tby postfix\\.test \\(Postfix\\) with ESMTP id ${qid}`));
    expect(Buffer.compare(rest, raw)).toBe(0);

    const session = await gw().serve.waitForLog((l) => l.msg === "smtp session" && l.id === id);
    expect({ tls: session.tls, helo: session.helo, from: session.from, recipients: session.recipients }).toEqual({
      tls: true, helo: "postfix.test", from: "alice@sender.example", recipients: [RCPT],
    });
    expect(pf().linesSince(mark).some((l) => l.includes(`TLS connection established to 127.0.0.1[127.0.0.1]:${ports.smtp}: TLSv1.`))).toBe(true);
    // Postfix saw PIPELINING and used it: MAIL, RCPT and DATA went out before the reply to MAIL.
    const talk = dialogue(pid, mark);
    const mail = talk.findIndex((l) => l.startsWith("> MAIL FROM:<alice@sender.example>"));
    expect(talk[mail]).toMatch(/^> MAIL FROM:<alice@sender\.example> SIZE=\d+ BODY=8BITMIME$/);
    expect(talk.slice(mail + 1, mail + 4)).toEqual([`> RCPT TO:<${RCPT}>`, "> DATA", "< 250 2.1.0 Accepted"]);
    expect(talk).toContain("< 250-PIPELINING");
    expect(talk).toContain("> STARTTLS");
  }, 60_000);

  test("SMTPUTF8: a UTF-8 sender and recipient go through Postfix to mailgw with SMTPUTF8 declared", async () => {
    const mark = pf().mark();
    const sender = "jörg@sender.example";
    const utf8Rcpt = "jürgen@company.com";
    const raw = message("smtputf8", "Grüße\r\n", `Jörg <${sender}>`);
    const qid = await inject(raw, [RCPT, utf8Rcpt], sender, " SMTPUTF8 BODY=8BITMIME");
    const [, pid = "", id = ""] = await pf().waitForLog(statusLine(qid, RCPT, "sent", "250 2\\.0\\.0 Queued as (\\S+)"), mark);
    await pf().waitForLog(statusLine(qid, utf8Rcpt, "sent", `250 2\\.0\\.0 Queued as ${id}`), mark);
    const mail = dialogue(pid, mark).find((l) => l.startsWith("> MAIL FROM:"));
    expect(mail).toMatch(/SMTPUTF8/);
    const session = await gw().serve.waitForLog((l) => l.msg === "smtp session" && l.id === id);
    expect({ from: session.from, recipients: session.recipients }).toEqual({ from: sender, recipients: [RCPT, utf8Rcpt] });
    const copies = gw().archiveFiles().filter((f) => f.includes(id));
    expect(copies).toHaveLength(1);
    expect(Buffer.compare(leadingFields(readFileSync(copies[0] as string), 2).rest, raw)).toBe(0);
  }, 60_000);

  test("reject rule → bounced with mailgw's 550 5.7.1 text; a recipient outside domains → 550 5.7.1 at RCPT", async () => {
    const mark = pf().mark();
    const before = gw().archiveFiles().length;
    const spam = await inject(message("[SPAM] cheap watches", "buy\r\n"));
    await pf().waitForLog(statusLine(spam, RCPT, "bounced", "host 127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\] said: 550 5\\.7\\.1 Message rejected as spam \\(in reply to end of DATA command\\)"), mark);

    const outsider = "eve@elsewhere.example";
    const mixed = message("two recipients", "hi\r\n");
    const qid = await inject(mixed, [outsider, RCPT]);
    const refused = await pf().waitForLog(statusLine(qid, outsider, "bounced", "host .* said: (550 5\\.7\\.1 .*) \\(in reply to RCPT TO command\\)"), mark);
    expect(refused[2]).toMatch(/Relaying denied/i);
    const [, , id = ""] = await pf().waitForLog(statusLine(qid, RCPT, "sent", "250 2\\.0\\.0 Queued as (\\S+)"), mark);
    const session = await gw().serve.waitForLog((l) => l.msg === "smtp session" && l.id === id);
    expect(session.recipients).toEqual([RCPT]);
    // Only the mixed message is archived (once); the spam was refused in the session.
    expect(gw().archiveFiles().length).toBe(before + 1);
    expect(gw().archiveFiles().filter((f) => f.includes(id))).toHaveLength(1);
    await waitForQueueEmpty();
  }, 60_000);

  test("452 4.3.1 at MAIL (DATA_DIR full, SIZE= declared) → deferred and kept queued; space freed + postqueue -f → exactly one copy", async () => {
    const free = gw().fillDisk();
    const mark = pf().mark();
    const raw = message("while the disk is full", `${"x".repeat(70)}\r\n`.repeat(200));
    let qid = "";
    try {
      qid = await inject(raw);
      await pf().waitForLog(statusLine(qid, RCPT, "deferred", "host .* said: 452 4\\.3\\.1 Insufficient system storage \\(in reply to MAIL FROM command\\)"), mark);
      const queued = pf().queued();
      expect(queued.map((q) => [q.queue_id, q.queue_name])).toEqual([[qid, "deferred"]]);
      expect(queued[0]?.recipients[0]?.delay_reason).toContain("452 4.3.1");
    } finally {
      free();
    }

    const again = pf().mark();
    pf().flush();
    const [, , id = ""] = await pf().waitForLog(statusLine(qid, RCPT, "sent", "250 2\\.0\\.0 Queued as (\\S+)"), again);
    await waitForQueueEmpty();
    expect(gw().archivedCopies(raw)).toHaveLength(1);
    expect(gw().archiveFiles().filter((f) => f.includes(id))).toHaveLength(1);
  }, 60_000);

  test("451 4.7.1 (rate limit, at MAIL under PIPELINING) → deferred; after the window, postqueue -f → both delivered once", async () => {
    const windowMs = 3000;
    await gw().restart({ RATE_LIMIT_MAX: "1", RATE_LIMIT_WINDOW_MS: String(windowMs) });
    const mark = pf().mark();
    const first = message("rate one", "1\r\n");
    const second = message("rate two", "2\r\n");
    const ids = [await inject(first), await inject(second)];
    const deferred = await pf().waitForLog(new RegExp(`(${ids.join("|")}): to=<${esc(RCPT)}>, .*status=deferred \\(host .* said: 451 4\\.7\\.1 .*\\(in reply to MAIL FROM command\\)\\)`), mark);
    const late = deferred[1] ?? "";
    const early = ids.find((q) => q !== late) ?? "";
    await pf().waitForLog(statusLine(early, RCPT, "sent", "250 .*"), mark);
    expect(pf().queued().map((q) => q.queue_id)).toEqual([late]);

    await Bun.sleep(windowMs + 300);
    const again = pf().mark();
    pf().flush();
    await pf().waitForLog(statusLine(late, RCPT, "sent", "250 2\\.0\\.0 Queued as \\S+"), again);
    await waitForQueueEmpty();
    for (const raw of [first, second]) expect(gw().archivedCopies(raw)).toHaveLength(1);
    expect(pf().linesSince(mark).filter((l) => l.includes("status=deferred"))).toHaveLength(1);
  }, 60_000);

  test("Postfix logged no warning, lost connection or timeout talking to mailgw in the whole run", () => {
    expect(pf().linesSince(0).filter((l) => /warning:|lost connection|timed out|improper/i.test(l))).toEqual([]);
  });
});
