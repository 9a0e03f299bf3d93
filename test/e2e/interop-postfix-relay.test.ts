/**
 * Interop with a real Postfix as the smarthost mailgw forwards through (RELAY_SMTP_*, what
 * users set up on port 587): a private Postfix instance (test/helpers/postfix.ts) whose smtpd
 * requires STARTTLS (smtpd_tls_security_level = encrypt, self-signed) and SASL (Cyrus, a sasldb
 * user, PLAIN/LOGIN, only after TLS), and relays what it takes to an smtp-server capture in
 * this process, so what arrives can be compared byte for byte:
 * - 20 forwards arrive once each: Postfix's Received:, mailgw's Received:, then the bytes
 *   mailgw was sent; envelope = original sender → forward_to; every one authenticated over
 *   TLS; the relay connections are pooled (far fewer `connect from` than messages); queue empty;
 * - a wrong password: deferred, the password in no mailgw log line; fixed in .env + SIGHUP →
 *   delivered once;
 * - RELAY_SMTP_TLS_VERIFY=true against the self-signed Postfix: deferred with a certificate
 *   error in `queue list`, no AUTH ever reaches Postfix;
 * - every session ends with QUIT (Postfix's `disconnect from … quit=1`), but the TLS one mailgw
 *   gave up on.
 * Needs root, Postfix ≥ 3.4 and saslpasswd2 (sasl2-bin); skips with the reason printed otherwise.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { countMatching as count, queueList, startCapture, waitUntil, type Capture, type Captured } from "../helpers/interop.ts";
import { freePorts, postfixSkipReason, saslMainSettings, startPostfix, writeSasldb, type Postfix } from "../helpers/postfix.ts";
import { forwardMessage as message, sendToGateway as send, startRelayGateway, certificateRefused, forwardEachOnce, twentyForwards, wrongPasswordThenFixed } from "../helpers/relay-gateway.ts";
import { makeCert } from "../smtp/helpers.ts";
import type { ServeProcess } from "../smtp/serve-process.ts";

const SKIP = postfixSkipReason(["saslpasswd2"]);
if (SKIP) console.warn(`skip: mailgw → Postfix relay interop tests: ${SKIP}`);

const REALM = "relay.test";
const USER = "relayuser";
const PASS = "Rel4y-s3cret-pass";
let capture: Capture | null = null;
let postfix: Postfix | null = null;
let relayPort = 0;

beforeAll(async () => {
  if (SKIP) return;
  const [capturePort = 0, submission = 0] = await freePorts(2);
  relayPort = submission;
  capture = await startCapture(capturePort);
  postfix = await startPostfix({
    services: [`127.0.0.1:${relayPort} inet n - n - - smtpd`],
    prepare(etc) {
      writeSasldb(etc, REALM, USER, PASS);
      makeCert(etc, "smtpd");
    },
    main: {
      myhostname: "relay.test",
      mynetworks: "",
      smtpd_relay_restrictions: "permit_sasl_authenticated, reject",
      smtpd_tls_security_level: "encrypt",
      smtpd_tls_auth_only: "yes",
      smtpd_tls_loglevel: "1",
      // TLS and the SASL user in Postfix's Received: line, so the message itself shows both.
      smtpd_tls_received_header: "yes",
      smtpd_sasl_authenticated_header: "yes",
      smtpd_tls_cert_file: "$config_directory/smtpd.pem",
      smtpd_tls_key_file: "$config_directory/smtpd-key.pem",
      ...saslMainSettings("$config_directory", REALM),
      relayhost: `[127.0.0.1]:${capturePort}`,
      smtp_tls_security_level: "none",
      local_header_rewrite_clients: "",
      // The whole dialogue with mailgw (and with the capture) in the log.
      debug_peer_list: "127.0.0.1",
    },
  });
}, 60_000);

afterAll(async () => {
  await postfix?.stop();
  await capture?.close();
}, 60_000);

const pf = (): Postfix => postfix as Postfix;

const relay = () => ({ port: relayPort, user: USER, pass: PASS });

/** mailgw with the forward rule through this Postfix; relay settings from `.env` with `vars` on top. */
async function gateway(vars: Record<string, string> = {}): Promise<ServeProcess> {
  const [smtp = 0, http = 0] = await freePorts(2);
  return startRelayGateway({ smtp, http }, relay(), vars);
}

const capturedOf = (raw: Buffer): Captured[] => (capture as Capture).of(raw);
const waitFor = (what: string, check: () => boolean): Promise<void> => waitUntil(what, check, 20_000, () => `postfix log:\n${pf().tail(20)}`);

describe.skipIf(SKIP !== null)("mailgw serve → Postfix smarthost (STARTTLS + SASL)", () => {
  test("20 forwards: each arrives once, bytes intact, envelope right, AUTH over TLS, pooled connections, queue empty", async () => {
    const mark = pf().mark();
    const s = await gateway();
    try {
      const messages = twentyForwards();
      const { relayReceived } = await forwardEachOnce(s, messages, capturedOf, waitFor);
      for (const [i, received] of relayReceived.entries()) {
        expect(received).toMatch(/^Received: from mx\.test \(localhost \[127\.0\.0\.1\]\)\r\n\t\(using TLSv1\.[23] /);
        // ESMTPSA: ESMTP + STARTTLS + SASL ("UTF8SMTPSA" for the SMTPUTF8 one).
        expect(received).toContain(`(Authenticated sender: ${USER}@${REALM})\r\n\tby relay.test (Postfix) with ${i === 2 ? "UTF8SMTPSA" : "ESMTPSA"} id`);
      }
      const log = pf().linesSince(mark);
      expect(count(log, new RegExp(`client=localhost\\[127\\.0\\.0\\.1\\], sasl_method=(PLAIN|LOGIN), sasl_username=${USER}@${REALM.replace(".", "\\.")}$`))).toBe(20);
      const connects = count(log, /postfix\/smtpd\[\d+\]: connect from localhost\[127\.0\.0\.1\]/);
      console.log(`20 forwards through Postfix over ${connects} relay connection(s)`);
      expect(connects).toBeGreaterThanOrEqual(1);
      expect(connects).toBeLessThanOrEqual(8); // RELAY_MAX_CONNECTIONS
      expect(count(log, /TLS connection established from localhost\[127\.0\.0\.1\]/)).toBe(connects);
      // The 8-bit ones (body; UTF-8 From:) were declared so, and Postfix passed that on.
      expect(messages.map((m) => capturedOf(m.raw)[0]?.body ?? "7BIT")).toEqual(messages.map((_, i) => (i === 1 || i === 2 ? "8BITMIME" : "7BIT")));
      expect(count(log, /: < localhost\[127\.0\.0\.1\]: MAIL FROM:<alice@sender\.example> BODY=8BITMIME SIZE=[1-9]\d*$/)).toBe(1);

      // Five more once those are done: the pooled connections take them, no new one is opened.
      const again = pf().mark();
      const more = Array.from({ length: 5 }, (_, i) => ({ raw: message(20 + i), from: "alice@sender.example" }));
      for (const id of await send(s, more)) await s.waitForLog((l) => l.msg === "delivered" && l.id === id);
      await waitFor("5 more at the capture", () => more.every((m) => capturedOf(m.raw).length === 1));
      expect(count(pf().linesSince(again), /: connect from localhost\[127\.0\.0\.1\]/)).toBe(0);
      expect(await queueList(s.dir)).toEqual([]);
    } finally {
      expect(await s.stop()).toBe(0);
    }
  }, 90_000);

  test("wrong password: deferred, never logged; fixed in .env + SIGHUP → delivered once", async () => {
    const mark = pf().mark();
    const relayRefused = async (): Promise<void> => {
      await pf().waitForLog(new RegExp(`SASL (PLAIN|LOGIN) authentication failed: authentication failure, sasl_username=${USER}@`), mark);
    };
    await wrongPasswordThenFixed({ gateway, relay: relay(), captured: capturedOf, relayRefused });
  }, 90_000);

  test("RELAY_SMTP_TLS_VERIFY=true against the self-signed Postfix: deferred with a certificate error, no AUTH sent", async () => {
    const mark = pf().mark();
    await certificateRefused(gateway, capturedOf, async () => {
      await pf().waitForLog(/: connect from localhost\[127\.0\.0\.1\]/, mark);
      const log = pf().linesSince(mark);
      expect(log.filter((l) => /: < localhost\[127\.0\.0\.1\]: (AUTH|MAIL)|sasl_/.test(l))).toEqual([]);
    });
  }, 60_000);

  test("Postfix logged no warning besides the refused password", () => {
    const unexpected = pf()
      .linesSince(0)
      .filter((l) => /warning:/.test(l) && !/SASL (PLAIN|LOGIN) authentication failed|SASL authentication failure: Password verification failed/.test(l));
    expect(unexpected).toEqual([]);
  });

  test("every session mailgw opened ended with QUIT (quit=1), but the one whose certificate it refused", async () => {
    await pf().waitForLog(/disconnect from localhost\[127\.0\.0\.1\] ehlo=1 starttls=0\/1 /); // logged last
    const disconnects = pf().linesSince(0).filter((l) => /postfix\/smtpd\[\d+\]: disconnect from localhost\[127\.0\.0\.1\]/.test(l));
    expect(disconnects.length).toBeGreaterThan(0);
    expect(disconnects.filter((l) => !/ quit=1 /.test(l)).map((l) => l.replace(/^.*disconnect from \S+ /, ""))).toEqual(["ehlo=1 starttls=0/1 commands=1/2"]);
  });
});
