/**
 * Interop with a real Exim 4 as the smarthost mailgw forwards through (RELAY_SMTP_*, port 587
 * with STARTTLS and SASL): a private Exim (test/helpers/exim.ts) with a self-signed
 * certificate, STARTTLS on one port and implicit TLS on another (tls_on_connect_ports), AUTH
 * advertised only inside TLS (auth_advertise_hosts), `plaintext` authenticators for PLAIN and
 * LOGIN with one fixed user, relaying only for authenticated clients to an smtp-server capture
 * in this process, so what arrives can be compared byte for byte:
 * - 20 forwards arrive once each: Exim's Received:, mailgw's Received:, then the bytes mailgw
 *   was sent; envelope = original sender → forward_to; every `<=` line says TLS and
 *   A=plain:relayuser (or login); the MAIL commands (logged by an ACL) carry BODY=8BITMIME for
 *   the 8-bit messages and SMTPUTF8 for the one with a UTF-8 sender, nothing for the others;
 *   the connections are pooled (≤ 8 `SMTP connection from` for 20 messages, none for 5 more
 *   once idle), and every session ends with QUIT; queue empty;
 * - a wrong password: deferred, Exim's authenticator refused it, the password in no mailgw log
 *   line; fixed in .env + SIGHUP → delivered once;
 * - RELAY_SMTP_TLS_VERIFY=true against the self-signed Exim: deferred with a certificate error
 *   in `queue list`, no AUTH ever reaches Exim;
 * - RELAY_SMTP_SECURE=tls on the implicit-TLS port: delivered, authenticated.
 * Needs root and an Exim 4 binary (installed, or unpacked by .ci/run); skips with the reason
 * printed otherwise.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eximSkipReason, startExim, type Exim } from "../helpers/exim.ts";
import { countMatching as count, freePortsIn, queueList, startCapture, waitUntil, type Capture, type Captured } from "../helpers/interop.ts";
import { forwardMessage as message, sendToGateway as send, startRelayGateway, type ToForward, certificateRefused, forwardEachOnce, twentyForwards, wrongPasswordThenFixed } from "../helpers/relay-gateway.ts";
import type { ServeProcess } from "../smtp/serve-process.ts";

const SKIP = eximSkipReason();
if (SKIP) console.warn(`skip: mailgw → Exim relay interop tests: ${SKIP}`);

const USER = "relayuser";
const PASS = "Rel4y-s3cret-pass";
let capture: Capture | null = null;
let exim: Exim | null = null;
let ports = { starttls: 0, implicit: 0 };

/** Exim as a submission smarthost: TLS first, then AUTH, then relaying for authenticated clients only. */
function eximSettings(capturePort: number) {
  const check = (user: string, pass: string): string => `\${if and {{eq{${user}}{${USER}}}{eq{${pass}}{${PASS}}}}}`;
  return {
    hostname: "relay.test",
    ports: [ports.starttls, ports.implicit],
    serverTls: true,
    main: `tls_on_connect_ports = ${ports.implicit}
auth_advertise_hosts = \${if eq{$tls_in_cipher}{}{}{*}}
acl_smtp_mail = acl_mail
acl_smtp_rcpt = acl_rcpt
# mailgw sends many messages per pooled connection: deliver each at once, never "queued only".
smtp_accept_queue_per_connection = 0`,
    // Every MAIL command in the log as sent (its BODY= and SMTPUTF8 parameters).
    acl: "acl_mail:\n  accept logwrite = $smtp_command\nacl_rcpt:\n  accept authenticated = *\n  deny message = relaying for authenticated clients only",
    routers: "capture:\n  driver = manualroute\n  route_list = * 127.0.0.1 byname\n  transport = to_capture\n  self = send",
    transports: `to_capture:\n  driver = smtp\n  port = ${capturePort}`,
    authenticators: `plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${check("$auth2", "$auth3")}
  server_set_id = $auth2
login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = Username:: : Password::
  server_condition = ${check("$auth1", "$auth2")}
  server_set_id = $auth1`,
  };
}

beforeAll(async () => {
  if (SKIP) return;
  const [capturePort = 0, starttls = 0, implicit = 0] = await freePortsIn(3, 24500, 24999);
  ports = { starttls, implicit };
  capture = await startCapture(capturePort);
  exim = await startExim(eximSettings(capturePort));
}, 60_000);

afterAll(async () => {
  await exim?.stop();
  await capture?.close();
}, 60_000);

const ex = (): Exim => exim as Exim;
const capturedOf = (raw: Buffer): Captured[] => (capture as Capture).of(raw);
const waitFor = (what: string, check: () => boolean): Promise<void> => waitUntil(what, check, 20_000, () => `exim log:\n${ex().tail(20)}`);
const relay = () => ({ port: ports.starttls, user: USER, pass: PASS });

async function gateway(vars: Record<string, string> = {}): Promise<ServeProcess> {
  const [smtp = 0, http = 0] = await freePortsIn(2, 24500, 24999);
  return startRelayGateway({ smtp, http }, relay(), vars);
}

/** Exim's `<=` lines (messages it accepted) after `mark`. */
const received = (mark: number): string[] => ex().linesSince(mark).filter((l) => / <= /.test(l));
const CONNECTION = /SMTP connection from \[127\.0\.0\.1\]:\d+ I=\[127\.0\.0\.1\]:(\d+) /;

describe.skipIf(SKIP !== null)("mailgw serve → Exim smarthost (STARTTLS + SASL)", () => {
  test("20 forwards: each arrives once, bytes intact, envelope right, AUTH over TLS, BODY=8BITMIME, pooled connections", async () => {
    const mark = ex().mark();
    const s = await gateway();
    try {
      const messages = twentyForwards();
      const { relayReceived } = await forwardEachOnce(s, messages, capturedOf, waitFor);
      for (const [i, line] of relayReceived.entries()) {
        const m = messages[i] as ToForward;
        const eximReceived = Buffer.from(line, "latin1").toString("utf8");
        // esmtpsa: ESMTP + TLS + SASL. Exim adds "utf8" to its protocol name for the SMTPUTF8
        // message and keeps it for the rest of that session (received_protocol is per session),
        // so later ASCII messages on the same pooled connection say utf8esmtpsa too; what mailgw
        // declared is checked on the MAIL lines below.
        expect(eximReceived).toMatch(new RegExp(`^Received: from \\[127\\.0\\.0\\.1\\] \\(port=\\d+ helo=mx\\.test\\)\r\n\tby relay\\.test with ${i === 2 ? "utf8esmtpsa" : "(utf8)?esmtpsa"}  ?\\(TLS1\\.[23]\\) tls \\S+\r\n\t\\(Exim 4\\.\\d+\\)\r\n\t\\(envelope-from <${m.from}>\\)\r\n\tid \\S+;`));
      }
      const accepted = received(mark);
      expect(accepted).toHaveLength(20);
      // Every one over TLS and authenticated.
      expect(count(accepted, new RegExp(` I=\\[127\\.0\\.0\\.1\\]:${ports.starttls} P=(utf8)?esmtpsa (L\\S* )?X=TLS1\\.[23]:\\S+ CV=no A=(plain|login):${USER} `))).toBe(20);
      // The two 8-bit ones (body; UTF-8 sender and From:) declared BODY=8BITMIME, only the one
      // with the UTF-8 sender SMTPUTF8. (Exim's M8S= field is no evidence: it keeps the last
      // BODY= value for the session's later messages, so the MAIL commands themselves are read.)
      expect(count(accepted, / M8S=8 /)).toBeGreaterThanOrEqual(2);
      const mails = ex().linesSince(mark).map((l) => /\] (MAIL FROM:.*)$/.exec(l)?.[1]).filter((l) => l !== undefined);
      expect(mails).toHaveLength(20);
      // Every MAIL announced the message's size (Exim offers SIZE): a relay with a lower limit
      // refuses before the transfer.
      expect(mails.every((l) => / SIZE=[1-9]\d*$/.test(l))).toBe(true);
      const withoutSize = mails.map((l) => l.replace(/ SIZE=\d+$/, ""));
      expect(withoutSize.filter((l) => l !== "MAIL FROM:<alice@sender.example>").sort()).toEqual([
        "MAIL FROM:<alice@sender.example> BODY=8BITMIME",
        "MAIL FROM:<j\\303\\266rg@sender.example> SMTPUTF8 BODY=8BITMIME", // Exim's log escapes non-ASCII bytes
      ]);
      const connects = count(ex().linesSince(mark), CONNECTION);
      console.log(`20 forwards through Exim over ${connects} relay connection(s)`);
      expect(connects).toBeGreaterThanOrEqual(1);
      expect(connects).toBeLessThanOrEqual(8); // RELAY_MAX_CONNECTIONS

      // Five more once those are done: the pooled connections take them, no new one is opened.
      const again = ex().mark();
      const more = Array.from({ length: 5 }, (_, i) => ({ raw: message(20 + i), from: "alice@sender.example" }));
      for (const id of await send(s, more)) await s.waitForLog((l) => l.msg === "delivered" && l.id === id);
      await waitFor("5 more at the capture", () => more.every((m) => capturedOf(m.raw).length === 1));
      expect(count(ex().linesSince(again), CONNECTION)).toBe(0);
      expect(await queueList(s.dir)).toEqual([]);
      // Exim removes a message from its queue just after the capture's 250, not before it.
      await waitUntil("an empty Exim queue", () => ex().queued().length === 0, 10_000, () => ex().queued().join("\n"));
    } finally {
      expect(await s.stop()).toBe(0);
    }
  }, 90_000);

  test("wrong password: deferred, never logged; fixed in .env + SIGHUP → delivered once", async () => {
    const mark = ex().mark();
    const relayRefused = async (): Promise<void> => {
      await ex().waitForLog(new RegExp(`(plain|login) authenticator failed for \\(mx\\.test\\) \\[127\\.0\\.0\\.1\\]:\\d+ I=\\[127\\.0\\.0\\.1\\]:${ports.starttls}: 535 Incorrect authentication data \\(set_id=${USER}\\)`), mark);
    };
    await wrongPasswordThenFixed({ gateway, relay: relay(), captured: capturedOf, relayRefused });
  }, 90_000);

  test("RELAY_SMTP_TLS_VERIFY=true against the self-signed Exim: deferred with a certificate error, no AUTH sent", async () => {
    const mark = ex().mark();
    await certificateRefused(gateway, capturedOf, async () => {
      await ex().waitForLog(CONNECTION, mark);
      expect(ex().linesSince(mark).filter((l) => /authenticator|A=|<= /.test(l))).toEqual([]);
    });
  }, 60_000);

  test("RELAY_SMTP_SECURE=tls on Exim's implicit-TLS port (tls_on_connect_ports): delivered once, authenticated", async () => {
    const mark = ex().mark();
    const s = await gateway({ RELAY_SMTP_SECURE: "tls", RELAY_SMTP_PORT: String(ports.implicit) });
    try {
      const raw = message(300);
      const [id = ""] = await send(s, [{ raw, from: "alice@sender.example" }]);
      await s.waitForLog((l) => l.msg === "delivered" && l.id === id, 20_000);
      await waitFor("the message at the capture", () => capturedOf(raw).length > 0);
      await Bun.sleep(300);
      expect(capturedOf(raw)).toHaveLength(1);
      const accepted = received(mark);
      expect(accepted).toHaveLength(1);
      expect(accepted[0]).toMatch(new RegExp(` I=\\[127\\.0\\.0\\.1\\]:${ports.implicit} P=esmtpsa (L\\S* )?X=TLS1\\.[23]:\\S+ CV=no A=(plain|login):${USER} `));
    } finally {
      expect(await s.stop()).toBe(0);
    }
  }, 60_000);

  test("every session mailgw opened ended with QUIT (but the one whose certificate it refused); no other error or panic", async () => {
    await ex().waitForLog(/SMTP connection from \(mx\.test\) .* closed by EOF$/); // the refused certificate's
    const log = ex().linesSince(0);
    const endings = log.map((l) => /SMTP connection from \(mx\.test\) .* closed by (\S+)$/.exec(l)?.[1]).filter((e) => e !== undefined);
    expect(endings).toHaveLength(count(log, CONNECTION));
    expect(endings.filter((e) => e !== "QUIT")).toEqual(["EOF"]);
    const unexpected = log
      .filter((l) => /error|unexpected|lost|timeout|rejected|refused/i.test(l))
      .filter((l) => !/authenticator failed for .*: 535 Incorrect authentication data/.test(l) && !/TLS error on connection from .*\(gnutls_handshake\)/.test(l));
    expect(unexpected).toEqual([]);
    expect(ex().paniclog()).toEqual([]);
  });
});
