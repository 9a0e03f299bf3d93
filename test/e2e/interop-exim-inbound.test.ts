/**
 * Interop with a real Exim 4 (Debian's default MTA) as the sending MTA delivering to our MX: a
 * private Exim (test/helpers/exim.ts) takes mail on its own port and routes everything to the
 * real `mailgw serve` (manualroute, smtp transport with hosts_require_tls, no certificate
 * verification for the self-signed test certificate). Exim's main log (`=>` delivered, `**`
 * bounced, `==` deferred, with mailgw's reply in C="…") and its transport debug output (the
 * SMTP dialogue) show what it did:
 * - STARTTLS, PIPELINING (MAIL and RCPT held back, sent with DATA), SIZE= on MAIL, DATA and not
 *   BDAT (mailgw offers no CHUNKING); no BODY=8BITMIME (Exim never sends it) yet the 8-bit body
 *   arrives intact: one archived copy = mailgw's Received:, Exim's Received:, the exact bytes;
 * - SMTPUTF8 (Exim 4.96 is built with I18N): a UTF-8 sender and recipient, declared;
 * - lines of 998 bytes and far longer (the transport's message_linelength_limit raised, as a
 *   pre-4.95 Exim sends them) archived intact;
 * - a bounce Exim generates (MAIL FROM:<>, a multipart/report DSN) accepted and archived;
 * - a reject rule → `**` with mailgw's 550 5.7.1 text; a recipient outside `domains` → `**`
 *   550 5.7.1 at RCPT while the other recipient is delivered;
 * - 451 4.3.0 (DATA_DIR full) and 451 4.7.1 (rate limit, at MAIL) → `==`, the message stays in
 *   Exim's queue; after the condition clears, `exim -qff` → delivered, exactly one copy.
 * Needs root and an Exim 4 binary (installed, or unpacked by .ci/run); skips with the reason
 * printed otherwise.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eximSkipReason, startExim, type Exim } from "../helpers/exim.ts";
import { MIME_8BIT, escapeRe, freePortsIn, leadingFields, submit, testMessage, waitUntil, type Submission } from "../helpers/interop.ts";
import { startMxGateway, type MxGateway } from "../helpers/mx-gateway.ts";
import type { ServeProcess } from "../smtp/serve-process.ts";

const SKIP = eximSkipReason();
if (SKIP) console.warn(`skip: Exim → mailgw interop tests: ${SKIP}`);

const RCPT = "bob@company.com";
let exim: Exim | null = null;
let gateway: MxGateway | null = null;
let mxPort = 0;

/** Exim's routing: bounces to our test senders vanish, nowhere.example fails, all else goes to mailgw. */
function eximSettings(eximPort: number) {
  return {
    hostname: "exim.test",
    ports: [eximPort],
    main: "acl_smtp_rcpt = acl_rcpt\nsmtputf8_advertise_hosts = *",
    acl: "acl_rcpt:\n  accept hosts = 127.0.0.1\n  deny",
    routers: `blackhole:
  driver = redirect
  domains = sender.example
  data = :blackhole:
unroutable:
  driver = redirect
  domains = nowhere.example
  allow_fail
  data = :fail: no such mailbox here
mailgw:
  driver = manualroute
  route_list = * 127.0.0.1 byname
  transport = to_mailgw
  self = send`,
    // The self-signed certificate is not verified (tls_verify_certificates unset); lines over
    // 998 bytes are passed on rather than bounced (Exim ≥ 4.95 bounces them by default).
    transports: `to_mailgw:
  driver = smtp
  port = ${mxPort}
  hosts_require_tls = *
  tls_verify_certificates =
  message_linelength_limit = 1000000`,
  };
}

beforeAll(async () => {
  if (SKIP) return;
  const [e = 0, s = 0, h = 0] = await freePortsIn(3, 24000, 24499);
  mxPort = s;
  gateway = await startMxGateway({ smtp: s, http: h });
  exim = await startExim(eximSettings(e));
}, 60_000);

afterAll(async () => {
  await exim?.stop();
  await gateway?.close();
}, 60_000);

const ex = (): Exim => exim as Exim;
const gw = (): MxGateway => gateway as MxGateway;
const serve = (): ServeProcess => gw().serve;

/** Hands a message to Exim's SMTP listener; returns Exim's message id. */
async function inject(m: Submission): Promise<string> {
  const reply = await submit(ex().port, m);
  const id = /^250 OK id=(\S+)/.exec(reply)?.[1];
  if (!id) throw new Error(`exim refused the message: ${reply}`);
  return id;
}

const message = (subject: string, body: string, from?: string): Buffer => testMessage(subject, body, { from, headers: MIME_8BIT });

/** An Exim main log line for `eximId`: `=>` delivered (`->` another recipient in the same transaction), `**` failed, to `rcpt` through mailgw. */
function logLine(eximId: string, flag: "=>" | "->" | "**", rcpt: string, rest: string): RegExp {
  return new RegExp(`\\[\\d+\\] ${eximId} ${escapeRe(flag)} ${escapeRe(rcpt)} R=mailgw T=to_mailgw .*H=127\\.0\\.0\\.1 \\[127\\.0\\.0\\.1\\]:${mxPort}${LOCAL} ${rest}$`);
}
/** The local address Exim connected from (log_selector +incoming_interface adds it to delivery lines). */
const LOCAL = "(?: I=\\[127\\.0\\.0\\.1\\]:\\d+)?";
const QUEUED = `X=TLS1\\.[23]:\\S+ CV=no L C="250 2\\.0\\.0 Queued as (\\S+)"`;

/**
 * The SMTP dialogue of Exim's delivery of `eximId` (from the debug output after `mark`):
 * ">> CMD" sent at once, "|> CMD" held back to be pipelined, "<< reply line".
 */
function dialogue(eximId: string, mark: number): string[] {
  const lines = ex().debug.linesSince(mark);
  const pid = lines.map((l) => new RegExp(`^\\s*(\\d+) delivering ${eximId} to `).exec(l)?.[1]).find((p) => p !== undefined);
  const out: string[] = [];
  let inReply = false;
  for (const l of lines) {
    const own = new RegExp(`^\\s*${pid} (.*)$`).exec(l)?.[1];
    if (own === undefined) continue;
    const cmd = /^\s*SMTP(>>|\|>|<<) (.*)$/.exec(own);
    if (cmd) {
      out.push(`${cmd[1]} ${cmd[2]}`);
      inReply = cmd[1] === "<<";
    } else if (inReply && /^\s+\d{3}[ -]/.test(own)) out.push(`<< ${own.trim()}`);
    else inReply = false;
  }
  return out;
}

async function sessionOf(id: string): Promise<Record<string, unknown>> {
  return serve().waitForLog((l) => l.msg === "smtp session" && l.id === id);
}

describe.skipIf(SKIP !== null)("Exim (sending MTA) → mailgw serve", () => {
  test("STARTTLS, PIPELINING, SIZE, DATA (no BDAT): one archived copy, the injected bytes after the two Received: lines", async () => {
    const mark = ex().mark();
    const debugMark = ex().debug.mark();
    const raw = message("Grüße 8bit", "Hallö Wörld, ½ € 日本\r\n.leading dot stays\r\nlast line\r\n");
    const eid = await inject({ raw, rcpts: [RCPT], from: "alice@sender.example", params: " BODY=8BITMIME" });
    const [, id = ""] = await ex().waitForLog(logLine(eid, "=>", RCPT, QUEUED), mark);

    const copies = gw().archivedCopies(raw);
    expect(copies).toHaveLength(1);
    const { fields, rest } = leadingFields(copies[0] as Buffer, 2);
    expect(fields[0]).toMatch(/^Received: from exim\.test \(\[127\.0\.0\.1\]\)\r\n\tby mx\.test \(mailgw\) with ESMTPS\r\n\t\(version=TLSv1\.[23] /);
    expect(fields[0]).toContain(`id ${id} for <${RCPT}>`);
    expect(fields[1]).toMatch(new RegExp(`^Received: from \\[127\\.0\\.0\\.1\\] \\(port=\\d+ helo=client\\.test\\)\r\n\tby exim\\.test with esmtp \\(Exim 4\\.\\d+\\)\r\n\t\\(envelope-from <alice@sender\\.example>\\)\r\n\tid ${eid}\r\n\tfor ${RCPT};`));
    expect(Buffer.compare(rest, raw)).toBe(0);

    const session = await sessionOf(id);
    expect({ tls: session.tls, helo: session.helo, from: session.from, recipients: session.recipients }).toEqual({
      tls: true, helo: "exim.test", from: "alice@sender.example", recipients: [RCPT],
    });
    const talk = dialogue(eid, debugMark);
    expect(talk).toContain(">> STARTTLS");
    expect(talk).toContain("<< 250-PIPELINING");
    expect(talk.filter((l) => /CHUNKING|BDAT/.test(l))).toEqual([]);
    // MAIL and RCPT held back and sent with DATA: pipelined. SIZE= declared; no BODY=, which Exim never sends.
    const mail = talk.findIndex((l) => l.startsWith("|> MAIL FROM:"));
    expect(talk[mail]).toMatch(/^\|> MAIL FROM:<alice@sender\.example> SIZE=\d+$/);
    expect(talk.slice(mail + 1, mail + 6)).toEqual([`|> RCPT TO:<${RCPT}>`, ">> DATA", "<< 250 2.1.0 Accepted", "<< 250 2.1.5 Accepted", "<< 354 End data with <CR><LF>.<CR><LF>"]);
  }, 60_000);

  test("SMTPUTF8: a UTF-8 sender and recipient go through Exim to mailgw with SMTPUTF8 declared", async () => {
    const mark = ex().mark();
    const debugMark = ex().debug.mark();
    const sender = "jörg@sender.example";
    const utf8Rcpt = "jürgen@company.com";
    const raw = message("smtputf8", "Grüße\r\n", `Jörg <${sender}>`);
    const eid = await inject({ raw, rcpts: [RCPT, utf8Rcpt], from: sender, params: " SMTPUTF8 BODY=8BITMIME" });
    const [, id = ""] = await ex().waitForLog(logLine(eid, "=>", RCPT, QUEUED), mark);
    await ex().waitForLog(logLine(eid, "->", utf8Rcpt, `X=\\S+ CV=no L C="250 2\\.0\\.0 Queued as ${id}"`), mark);
    expect(dialogue(eid, debugMark).find((l) => l.startsWith("|> MAIL FROM:"))).toMatch(new RegExp(`^\\|> MAIL FROM:<${sender}> SIZE=\\d+ SMTPUTF8$`));
    const session = await sessionOf(id);
    expect({ from: session.from, recipients: session.recipients }).toEqual({ from: sender, recipients: [RCPT, utf8Rcpt] });
    const copies = gw().archivedCopies(raw);
    expect(copies).toHaveLength(1);
    expect(Buffer.compare(leadingFields(copies[0] as Buffer, 2).rest, raw)).toBe(0);
  }, 60_000);

  test("a 998-byte line and a 5000-byte line are archived byte for byte", async () => {
    const mark = ex().mark();
    const body = `short\r\n${"a".repeat(998)}\r\n${"b".repeat(5000)}\r\n.${"c".repeat(997)}\r\nend\r\n`;
    const raw = message("long lines", body);
    const eid = await inject({ raw, rcpts: [RCPT], from: "alice@sender.example" });
    await ex().waitForLog(logLine(eid, "=>", RCPT, QUEUED), mark);
    const copies = gw().archivedCopies(raw);
    expect(copies).toHaveLength(1);
    expect(Buffer.compare(leadingFields(copies[0] as Buffer, 2).rest, raw)).toBe(0);
  }, 60_000);

  test("a bounce Exim generates (MAIL FROM:<>, multipart/report) is accepted and archived", async () => {
    const mark = ex().mark();
    const debugMark = ex().debug.mark();
    const raw = message("to nowhere", "this cannot be delivered\r\n", "Carol <carol@company.com>");
    const eid = await inject({ raw, rcpts: ["nobody@nowhere.example"], from: "carol@company.com" });
    await ex().waitForLog(new RegExp(`${eid} \\*\\* nobody@nowhere\\.example R=unroutable: no such mailbox here$`), mark);
    const [, bounceId = ""] = await ex().waitForLog(new RegExp(`\\[\\d+\\] (\\S+) <= <> R=${eid} U=\\S+ P=local .*for carol@company\\.com$`), mark);
    const [, id = ""] = await ex().waitForLog(logLine(bounceId, "=>", "carol@company.com", QUEUED), mark);
    expect(dialogue(bounceId, debugMark).find((l) => l.startsWith("|> MAIL FROM:"))).toMatch(/^\|> MAIL FROM:<> SIZE=\d+$/);
    const session = await sessionOf(id);
    expect({ from: session.from, recipients: session.recipients, decision: session.decision }).toEqual({ from: "", recipients: ["carol@company.com"], decision: "archive" });
    const archived = gw().archiveFiles().filter((f) => f.includes(id));
    expect(archived).toHaveLength(1);
    const dsn = (await Bun.file(archived[0] as string).text()).replace(/\r\n/g, "\n");
    expect(dsn).toMatch(/^From: Mail Delivery System <Mailer-Daemon@exim\.test>$/m);
    expect(dsn).toMatch(/^Content-Type: multipart\/report; report-type=delivery-status;/m);
    expect(dsn).toMatch(/^Final-Recipient: rfc822;nobody@nowhere\.example$/m);
    expect(dsn).toContain(/^Message-ID: .*$/m.exec(raw.toString())?.[0] ?? "?");
  }, 60_000);

  test("reject rule → ** with mailgw's 550 5.7.1 text; a recipient outside domains → ** 550 5.7.1 at RCPT, the other delivered", async () => {
    const mark = ex().mark();
    const before = gw().archiveFiles().length;
    const spam = await inject({ raw: message("[SPAM] cheap watches", "buy\r\n"), rcpts: [RCPT], from: "alice@sender.example" });
    await ex().waitForLog(logLine(spam, "**", RCPT, `X=\\S+ CV=no: SMTP error from remote mail server after end of data: 550 5\\.7\\.1 Message rejected as spam`), mark);

    const outsider = "eve@elsewhere.example";
    const qid = await inject({ raw: message("two recipients", "hi\r\n"), rcpts: [outsider, RCPT], from: "alice@sender.example" });
    const refused = await ex().waitForLog(logLine(qid, "**", outsider, `X=\\S+ CV=no: SMTP error from remote mail server after RCPT TO:<${outsider}>: (550 5\\.7\\.1 .*)`), mark);
    expect(refused[1]).toMatch(/Relaying denied/i);
    const [, id = ""] = await ex().waitForLog(logLine(qid, "=>", RCPT, QUEUED), mark);
    expect((await sessionOf(id)).recipients).toEqual([RCPT]);
    // Exim bounced both to alice@sender.example (blackholed here); only the mixed one is archived.
    await ex().waitForLog(new RegExp(`=> :blackhole: <alice@sender\\.example> R=blackhole$`), mark);
    expect(gw().archiveFiles().length).toBe(before + 1);
    expect(gw().archiveFiles().filter((f) => f.includes(id))).toHaveLength(1);
    // Exim logs "=>" before it writes "Completed" and removes the message's spool files, and the
    // two bounces are delivered one after the other: the queue empties shortly after, not at once.
    await waitUntil("an empty Exim queue", () => ex().queued().length === 0, 10_000, () => ex().queued().join("\n"));
  }, 60_000);

  test("452 4.3.1 at MAIL (DATA_DIR full, SIZE= declared) → == and kept queued; space freed + exim -qff → exactly one copy", async () => {
    const free = gw().fillDisk();
    const mark = ex().mark();
    const raw = message("while the disk is full", `${"x".repeat(70)}\r\n`.repeat(200));
    let eid = "";
    try {
      eid = await inject({ raw, rcpts: [RCPT], from: "alice@sender.example" });
      await ex().waitForLog(new RegExp(`${eid} == ${RCPT} R=mailgw T=to_mailgw defer \\(-\\d+\\) H=127\\.0\\.0\\.1 \\[127\\.0\\.0\\.1\\]:${mxPort}${LOCAL}: SMTP error from remote mail server after (?:pipelined )?MAIL FROM:<alice@sender\\.example> SIZE=\\d+: 452 4\\.3\\.1 `), mark);
      expect(ex().queued().join("\n")).toContain(eid);
    } finally {
      free();
    }
    const again = ex().mark();
    ex().flush();
    const [, id = ""] = await ex().waitForLog(logLine(eid, "=>", RCPT, QUEUED), again);
    await ex().waitForLog(new RegExp(`${eid} Completed$`), again);
    expect(ex().queued()).toEqual([]);
    expect(gw().archivedCopies(raw)).toHaveLength(1);
    expect(gw().archiveFiles().filter((f) => f.includes(id))).toHaveLength(1);
  }, 60_000);

  test("451 4.7.1 (rate limit, at MAIL under PIPELINING) → ==; after the window, exim -qff → both delivered once", async () => {
    const windowMs = 3000;
    await gw().restart({ RATE_LIMIT_MAX: "1", RATE_LIMIT_WINDOW_MS: String(windowMs) });
    const mark = ex().mark();
    const first = message("rate one", "1\r\n");
    const second = message("rate two", "2\r\n");
    const ids = [await inject({ raw: first, rcpts: [RCPT], from: "alice@sender.example" }), await inject({ raw: second, rcpts: [RCPT], from: "alice@sender.example" })];
    const deferred = await ex().waitForLog(new RegExp(`(${ids.join("|")}) == ${RCPT} R=mailgw .*: SMTP error from remote mail server after pipelined MAIL FROM:<alice@sender\\.example> SIZE=\\d+: 451 4\\.7\\.1 `), mark);
    const late = deferred[1] ?? "";
    const early = ids.find((q) => q !== late) ?? "";
    await ex().waitForLog(logLine(early, "=>", RCPT, QUEUED), mark);
    expect(ex().queued().join("\n")).toContain(late);

    await Bun.sleep(windowMs + 300);
    const again = ex().mark();
    ex().flush();
    await ex().waitForLog(logLine(late, "=>", RCPT, QUEUED), again);
    await ex().waitForLog(new RegExp(`${late} Completed$`), again);
    expect(ex().queued()).toEqual([]);
    for (const raw of [first, second]) expect(gw().archivedCopies(raw)).toHaveLength(1);
    expect(ex().linesSince(mark).filter((l) => / == /.test(l))).toHaveLength(1);
  }, 60_000);

  test("Exim logged no TLS error, lost connection, protocol error or panic talking to mailgw in the whole run", () => {
    expect(ex().linesSince(0).filter((l) => /TLS error|unexpected disconnection|lost connection|synchronization error|timed? ?out|protocol error/i.test(l))).toEqual([]);
    expect(ex().paniclog()).toEqual([]);
  });
});
