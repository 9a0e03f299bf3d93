/**
 * Interop with a real OpenSMTPD 6.8 as the sending MTA delivering to our MX: a private smtpd
 * (test/helpers/opensmtpd.ts) takes mail on its own port and relays it to the real
 * `mailgw serve` (`relay host smtp+tls://… tls no-verify`: STARTTLS required, the self-signed
 * certificate not verified); the bounces it generates go to a capture server on 127.0.0.2 (a
 * route of its own, so OpenSMTPD's per-route connection delay does not hold them up). Its log
 * (`mta delivery … result=… stat=…`, and with `-T transfer` the SMTP dialogue) shows:
 * - STARTTLS, then one command at a time (OpenSMTPD 6.8 does not pipeline, sends no BODY= or
 *   SIZE=), several messages on one kept session: one archived copy = mailgw's Received:,
 *   OpenSMTPD's Received:, the exact bytes;
 * - a reject rule → PermFail with mailgw's 550 5.7.1 text and a bounce carrying it to the
 *   sender; a recipient outside `domains` → 550 5.7.1 at RCPT, the other recipient delivered;
 * - 451 4.3.0 (DATA_DIR full) and 451 4.7.1 (rate limit, at MAIL) → TempFail, the envelope
 *   stays queued; after the condition clears, `smtpctl schedule all` → delivered exactly once.
 *   The rate limit is a second, rate-limited mailgw that mail from rate@sender.example is
 *   routed to, not a restart: OpenSMTPD keeps its session to mailgw open for more mail and
 *   only finds mailgw's 421 (shutting down) when it next writes on it.
 * Needs root and an OpenSMTPD binary (installed, or unpacked by .ci/run); skips with the reason
 * printed otherwise.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MIME_8BIT, escapeRe, freePortsIn, leadingFields, startCapture, submit, testMessage, waitUntil, type Capture, type Submission } from "../helpers/interop.ts";
import { startMxGateway, type MxGateway } from "../helpers/mx-gateway.ts";
import { opensmtpdSkipReason, startOpenSmtpd, type OpenSmtpd } from "../helpers/opensmtpd.ts";

const SKIP = opensmtpdSkipReason();
if (SKIP) console.warn(`skip: OpenSMTPD → mailgw interop tests: ${SKIP}`);

const RCPT = "bob@company.com";
let smtpd: OpenSmtpd | null = null;
let gateway: MxGateway | null = null;
let limited: MxGateway | null = null;
const RATE_WINDOW_MS = 3000;
let bounces: Capture | null = null;
let ports = { smtpd: 0, mx: 0 };

beforeAll(async () => {
  if (SKIP) return;
  const [o = 0, s = 0, h = 0, b = 0, rs = 0, rh = 0] = await freePortsIn(6, 26000, 26499);
  ports = { smtpd: o, mx: s };
  gateway = await startMxGateway({ smtp: s, http: h });
  limited = await startMxGateway({ smtp: rs, http: rh }, { RATE_LIMIT_MAX: "1", RATE_LIMIT_WINDOW_MS: String(RATE_WINDOW_MS) });
  bounces = await startCapture(b, "127.0.0.2");
  smtpd = await startOpenSmtpd(
    "opensmtpd.test",
    `listen on 127.0.0.1 port ${o}
action "bounces" relay host smtp://127.0.0.2:${b}
action "mailgw" relay host smtp+tls://127.0.0.1:${s} tls no-verify
action "limited" relay host smtp+tls://127.0.0.1:${rs} tls no-verify
match from any for domain "sender.example" action "bounces"
match from any mail-from "rate@sender.example" for any action "limited"
match from any for any action "mailgw"
`,
  );
}, 60_000);

afterAll(async () => {
  await smtpd?.stop();
  await bounces?.close();
  await gateway?.close();
  await limited?.close();
}, 60_000);

const od = (): OpenSmtpd => smtpd as OpenSmtpd;
const gw = (): MxGateway => gateway as MxGateway;

/** Hands a message to OpenSMTPD; returns its message id (the first 8 hex digits of its envelope ids). */
async function inject(m: Submission): Promise<string> {
  const reply = await submit(ports.smtpd, m);
  const id = /^250 2\.0\.0 ([0-9a-f]{8}) Message accepted/.exec(reply)?.[1];
  if (!id) throw new Error(`opensmtpd refused the message: ${reply}`);
  return id;
}

const message = (subject: string, body: string): Buffer => testMessage(subject, body, { headers: MIME_8BIT });
const send = (raw: Buffer, rcpts = [RCPT]): Promise<string> => inject({ raw, rcpts, from: "alice@sender.example" });

/** OpenSMTPD's `mta delivery` line for message `msgid` to `rcpt` through mailgw with `result` and `stat`. */
function delivery(msgid: string, rcpt: string, result: "Ok" | "PermFail" | "TempFail", stat: string, from = "alice@sender.example"): RegExp {
  return new RegExp(`^\\S+ mta delivery evpid=${msgid}[0-9a-f]{8} from=<${escapeRe(from)}> to=<${escapeRe(rcpt)}> rcpt=<-> source="127\\.0\\.0\\.1" relay="127\\.0\\.0\\.1 \\(localhost\\)" delay=\\d+s result="${result}" stat="${stat}"$`);
}
const QUEUED = "250 2\\.0\\.0 Queued as (\\S+)";

/** The SMTP dialogue OpenSMTPD's mta sessions had after `mark` (">>> sent", "<<< received"). */
const dialogue = (mark: number): string[] => od().linesSince(mark).map((l) => /^mta: 0x[0-9a-f]+: ((?:<<<|>>>) .*)$/.exec(l)?.[1]).filter((l) => l !== undefined);

describe.skipIf(SKIP !== null)("OpenSMTPD (sending MTA) → mailgw serve", () => {
  test("STARTTLS, one command at a time: one archived copy, the injected bytes after the two Received: lines", async () => {
    const mark = od().mark();
    const raw = message("Grüße 8bit", "Hallö Wörld, ½ € 日本\r\n.leading dot stays\r\nlast line\r\n");
    const msgid = await inject({ raw, rcpts: [RCPT], from: "alice@sender.example", params: " BODY=8BITMIME" });
    const [, id = ""] = await od().waitForLog(delivery(msgid, RCPT, "Ok", QUEUED), mark);

    const copies = gw().archivedCopies(raw);
    expect(copies).toHaveLength(1);
    const { fields, rest } = leadingFields(copies[0] as Buffer, 2);
    expect(fields[0]).toMatch(/^Received: from opensmtpd\.test \(\[127\.0\.0\.1\]\)\r\n\tby mx\.test \(mailgw\) with ESMTPS\r\n\t\(version=TLSv1\.[23] /);
    expect(fields[0]).toContain(`id ${id} for <${RCPT}>`);
    expect(fields[1]).toMatch(new RegExp(`^Received: from client\\.test \\(localhost \\[127\\.0\\.0\\.1\\]\\)\r\n\tby opensmtpd\\.test \\(OpenSMTPD\\) with ESMTP id ${msgid}\r\n\tfor <${RCPT}>;`));
    expect(Buffer.compare(rest, raw)).toBe(0);

    // (mailgw's session log line waits for the session's end: OpenSMTPD keeps it open for more
    // mail. Its Received: above already says TLS and the HELO name.)
    expect(od().linesSince(mark).some((l) => / mta tls ciphers=TLSv1\.[23]:/.test(l))).toBe(true);
    const talk = dialogue(mark);
    expect(talk).toContain(">>> STARTTLS");
    const mail = talk.indexOf(">>> MAIL FROM:<alice@sender.example>");
    expect(talk.slice(mail, mail + 6)).toEqual([">>> MAIL FROM:<alice@sender.example>", "<<< 250 2.1.0 Accepted", `>>> RCPT TO:<${RCPT}>`, "<<< 250 2.1.5 Accepted", ">>> DATA", "<<< 354 End data with <CR><LF>.<CR><LF>"]);
  }, 60_000);

  test("reject rule → PermFail with mailgw's 550 5.7.1 text, bounced to the sender; a recipient outside domains → 550 at RCPT, the other delivered", async () => {
    const mark = od().mark();
    const before = gw().archiveFiles().length;
    const spam = await send(message("[SPAM] cheap watches", "buy\r\n"));
    await od().waitForLog(delivery(spam, RCPT, "PermFail", "550 5\\.7\\.1 Message rejected as spam"), mark);

    const outsider = "eve@elsewhere.example";
    const mixed = await send(message("two recipients", "hi\r\n"), [outsider, RCPT]);
    const [, refused = ""] = await od().waitForLog(delivery(mixed, outsider, "PermFail", "(550 5\\.7\\.1 .*)"), mark);
    expect(refused).toMatch(/Relaying denied/i);
    const [, id = ""] = await od().waitForLog(delivery(mixed, RCPT, "Ok", QUEUED), mark);
    expect(gw().archiveFiles().length).toBe(before + 1);
    expect(gw().archiveFiles().filter((f) => f.includes(id))).toHaveLength(1);

    // OpenSMTPD reports both failures to alice from <>, with mailgw's text.
    const capture = bounces as Capture;
    await waitUntil("two bounces at the capture", () => capture.captured.length >= 2, 30_000, () => od().tail(20));
    const reports = capture.captured.map((c) => ({ from: c.from, to: c.to, text: c.data.toString("utf8") }));
    expect(reports.map(({ from, to }) => ({ from, to }))).toEqual([{ from: "", to: ["alice@sender.example"] }, { from: "", to: ["alice@sender.example"] }]);
    expect(reports.some((r) => r.text.includes("550 5.7.1 Message rejected as spam"))).toBe(true);
    expect(reports.some((r) => /550 5\.7\.1 .*Relaying denied/i.test(r.text))).toBe(true);
  }, 60_000);

  test("451 4.3.0 (DATA_DIR full) → TempFail, kept queued; space freed + smtpctl schedule all → exactly one copy", async () => {
    const free = gw().fillDisk();
    const mark = od().mark();
    const raw = message("while the disk is full", `${"x".repeat(70)}\r\n`.repeat(200));
    let msgid = "";
    try {
      msgid = await send(raw);
      await od().waitForLog(delivery(msgid, RCPT, "TempFail", "451 4\\.3\\.0 .*"), mark);
      expect(od().queued().filter((e) => e.startsWith(msgid))).toHaveLength(1);
    } finally {
      free();
    }
    const again = od().mark();
    od().scheduleAll();
    const [, id = ""] = await od().waitForLog(delivery(msgid, RCPT, "Ok", QUEUED), again, 30_000);
    await waitUntil("an empty queue", () => od().queued().length === 0, 10_000);
    expect(gw().archivedCopies(raw)).toHaveLength(1);
    expect(gw().archiveFiles().filter((f) => f.includes(id))).toHaveLength(1);
  }, 60_000);

  test("451 4.7.1 (rate limit, at MAIL) → TempFail; after the window, smtpctl schedule all → both delivered once", async () => {
    const rated = limited as MxGateway;
    const mark = od().mark();
    const from = "rate@sender.example";
    const first = message("rate one", "1\r\n");
    const second = message("rate two", "2\r\n");
    const ids = [await inject({ raw: first, rcpts: [RCPT], from }), await inject({ raw: second, rcpts: [RCPT], from })];
    const [, late = ""] = await od().waitForLog(new RegExp(`mta delivery evpid=(${ids.join("|")})[0-9a-f]{8} .* result="TempFail" stat="451 4\\.7\\.1 `), mark);
    const early = ids.find((q) => q !== late) ?? "";
    await od().waitForLog(delivery(early, RCPT, "Ok", QUEUED, from), mark);
    expect(od().queued().map((e) => e.slice(0, 8))).toEqual([late]);

    await Bun.sleep(RATE_WINDOW_MS + 300);
    const again = od().mark();
    od().scheduleAll();
    await od().waitForLog(delivery(late, RCPT, "Ok", QUEUED, from), again, 30_000);
    await waitUntil("an empty queue", () => od().queued().length === 0, 10_000);
    for (const raw of [first, second]) expect(rated.archivedCopies(raw)).toHaveLength(1);
    expect(od().linesSince(mark).filter((l) => /result="TempFail"/.test(l))).toHaveLength(1);
  }, 60_000);

  test("OpenSMTPD logged no warning, error or lost session talking to mailgw in the whole run", () => {
    const unexpected = od()
      .linesSince(0)
      .filter((l) => /^warn:|error(?!=0)|mta error|lost|timeout for session(?! hangon)/i.test(l))
      // Start-up race in a brand-new spool (its purge process may look before purge/ exists).
      .filter((l) => l !== "warn: purge_task: opendir: No such file or directory");
    expect(unexpected).toEqual([]);
  });
});
