/**
 * Forward deliveries through a real smtp-server relay on loopback (STARTTLS + AUTH):
 * success, wrong credentials, 451 then success, 550, dropped connection, stall, relay down
 * then up, a relay without STARTTLS (from the start, or after pooled deliveries), a 454 to
 * STARTTLS, implicit TLS (RELAY_SMTP_SECURE=tls) with a TLS relay and with a plain one, connection reuse.
 */
import { attemptDeadlineMs } from "../../src/queue/attempt-runner.ts";
import { afterEach, describe, expect, test } from "bun:test";
import { isAscii } from "node:buffer";
import { existsSync, rmSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import PostalMime from "postal-mime";
import { silentLogger } from "../../src/log/logger.ts";
import { retryNow } from "../../src/queue/queue-store.ts";
import { MISSING_FILE_PREFIX } from "../../src/store/messages.ts";
import { createDeliveryWorker, type DeliveryWorker } from "../../src/queue/worker.ts";
import {
  attemptsOf, counter, deliveryOf, makeEnv, onLines, relayVars, SAMPLE_MESSAGE, seedDelivery, startRelay,
  waitFor, type ScriptedRelay, type TestEnv,
} from "./helpers.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

function countersOf(t: TestEnv, metric: string): { rule: string; category: string; n: number }[] {
  return t.db.query<{ rule: string; category: string; n: number }, [string]>("SELECT rule, category, n FROM daily_counters WHERE metric = ?").all(metric);
}

async function setup(relayOpts = {}, vars: Record<string, string> = {}, workerOpts = {}): Promise<{ relay: ScriptedRelay; t: TestEnv; worker: DeliveryWorker }> {
  const relay = await startRelay(relayOpts);
  cleanups.push(() => relay.close());
  const t = makeEnv({ ...relayVars(relay), ...vars });
  const worker = createDeliveryWorker({ config: t.config, db: t.db, logger: silentLogger, pollIntervalMs: 50, ...workerOpts });
  cleanups.push(() => worker.stop());
  return { relay, t, worker };
}

describe("forward through the relay", () => {
  test("delivers with STARTTLS + AUTH, original envelope sender, forward_to recipients, bytes intact", async () => {
    const { relay, t, worker } = await setup();
    const id = seedDelivery(t, { target: ["sales@company.com", "boss@company.com"], mailFrom: "alice@example.org", rule: "to-sales", category: "sales" });
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).state === "delivered", 10_000, "delivered");
    expect(relay.received).toHaveLength(1);
    const m = relay.received[0]!;
    expect(m.from).toBe("alice@example.org");
    expect(m.to).toEqual(["sales@company.com", "boss@company.com"]);
    expect(m.secure).toBe(true);
    expect(m.user).toBe("relayuser");
    expect(m.data.toString("binary")).toBe(SAMPLE_MESSAGE);
    expect(relay.authAttempts.every((a) => a.secure)).toBe(true);
    const attempts = attemptsOf(t.db, id);
    expect(attempts).toHaveLength(1);
    expect(attempts[0]!.ok).toBe(1);
    expect(attempts[0]!.reply).toContain("250");
    expect(counter(t.db, "delivered:forward")).toBe(1);
    // Counted under the delivery's rule and category (the stats page's and /metrics' labels).
    expect(countersOf(t, "delivered:forward")).toEqual([{ rule: "to-sales", category: "sales", n: 1 }]);
    // delivered + message done → spool file released
    await waitFor(() => !existsSync(join(t.dataDir, "spool", `${id}.eml`)), 5_000, "spool file released");
  }, 30_000);

  // RFC 6152: 8-bit data only after BODY=8BITMIME. Without it a relay (Postfix) takes the message
  // as 7-bit, passes that on, and would send the 8-bit bytes unconverted to a 7-bit-only host.
  test("an 8-bit message is relayed with BODY=8BITMIME, a 7-bit one without", async () => {
    const { relay, t, worker } = await setup();
    const eight = seedDelivery(t, { raw: Buffer.from(`${SAMPLE_MESSAGE}Grüße\r\n`, "utf8") });
    const seven = seedDelivery(t, { raw: SAMPLE_MESSAGE });
    worker.start();
    await waitFor(() => [eight, seven].every((id) => deliveryOf(t.db, id).state === "delivered"), 10_000, "delivered");
    const bodyOf = (needle: string) => relay.received.filter((m) => m.data.includes(needle)).map((m) => m.body);
    expect(bodyOf("Grüße")).toEqual(["8BITMIME"]);
    expect(relay.received.filter((m) => !m.data.includes("Grüße")).map((m) => m.body)).toEqual([undefined]);
  }, 30_000);

  // RFC 6152 §3: to a relay without 8BITMIME the message goes converted (as Postfix does), not
  // as 8-bit data it did not agree to take, and the reader gets the same text.
  test("to a relay without 8BITMIME an 8-bit message goes as quoted-printable, without BODY=", async () => {
    const { relay, t, worker } = await setup({ hide8BitMime: true });
    const raw = Buffer.from(`${SAMPLE_MESSAGE}Grüße, ½ €\r\n`, "utf8");
    const id = seedDelivery(t, { raw });
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).state === "delivered", 10_000, "delivered");
    const m = relay.received[0]!;
    expect(m.body).toBeUndefined();
    expect(isAscii(m.data)).toBe(true);
    expect(m.data.toString("latin1")).toContain("Content-Transfer-Encoding: quoted-printable\r\n\r\n");
    expect((await PostalMime.parse(m.data)).text).toBe((await PostalMime.parse(raw)).text);
  }, 30_000);

  // Line ends are made CRLF before the conversion: given bare LFs, quoted-printable would encode
  // each as =0A and the reader would get the body as one line.
  test("to a relay without 8BITMIME, an 8-bit message with bare LF line ends keeps its lines", async () => {
    const { relay, t, worker } = await setup({ hide8BitMime: true });
    const raw = Buffer.from("From: a@example.org\nTo: b@company.com\nSubject: lf\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\nhéllo\nwörld\n", "utf8");
    const id = seedDelivery(t, { raw });
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).state === "delivered", 10_000, "delivered");
    const data = relay.received[0]!.data.toString("latin1");
    expect(data).toContain("\r\n\r\nh=C3=A9llo\r\nw=C3=B6rld\r\n");
    expect(data).not.toContain("=0A");
    expect(data.replace(/\r\n/g, "")).not.toMatch(/[\r\n]/);
  }, 30_000);

  test("null sender is relayed as MAIL FROM:<>", async () => {
    const { relay, t, worker } = await setup();
    const id = seedDelivery(t, { mailFrom: "" });
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).state === "delivered", 10_000, "delivered");
    expect(relay.received[0]!.from).toBe("");
  }, 30_000);

  test("wrong credentials → deferred (temporary), never delivered, password not in the error", async () => {
    const { relay, t, worker } = await setup({}, { RELAY_SMTP_PASS: "wrong-secret-pass" });
    const id = seedDelivery(t);
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).attempts >= 2, 10_000, "two attempts");
    const d = deliveryOf(t.db, id);
    expect(["deferred", "delivering", "queued"]).toContain(d.state);
    expect(relay.received).toHaveLength(0);
    expect(relay.authAttempts.length).toBeGreaterThan(0);
    expect(d.last_error ?? "").toContain("535");
    expect(d.last_error ?? "").not.toContain("wrong-secret-pass");
    expect(counter(t.db, "deferred:forward")).toBeGreaterThanOrEqual(2);
  }, 30_000);

  // The deadline ran while the data was sent: on a link slower than size / 120 s, every try timed out.
  test("a big message over a slow link is delivered: the attempt's deadline grows with the message's size", async () => {
    const { relay, t, worker } = await setup({ readBytesPerSecond: 4 * 1024 * 1024 }, {}, { attemptTimeoutMs: 1_000 });
    const line = `${"x".repeat(76)}\r\n`;
    const raw = `Subject: big\r\n\r\n${line.repeat(Math.ceil((24 * 1024 * 1024) / line.length))}`;
    const id = seedDelivery(t, { raw });
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).state !== "queued" && deliveryOf(t.db, id).state !== "delivering", 40_000, "an outcome");
    expect({ state: deliveryOf(t.db, id).state, error: deliveryOf(t.db, id).last_error }).toEqual({ state: "delivered", error: null });
    expect(relay.received[0]?.data.length).toBe(Buffer.byteLength(raw));
    expect(attemptDeadlineMs(1_000, 24 * 1024 * 1024)).toBe(1_000 + 768_000);
  }, 60_000);

  test("a relay offering only logins mailgw lacks (AUTH NTLM GSSAPI): the error names them and the fix, not the password", async () => {
    const { relay, t, worker } = await setup({ authMethods: ["NTLM", "GSSAPI"] });
    const id = seedDelivery(t);
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).attempts >= 1, 10_000, "an attempt");
    const error = deliveryOf(t.db, id).last_error ?? "";
    expect(error).toContain("the relay offers no login mailgw can use (AUTH NTLM GSSAPI; mailgw logs in with PLAIN or LOGIN, over TLS)");
    expect(error).toContain("504");
    expect(error).not.toContain("check RELAY_SMTP_USER");
    expect(relay.received).toHaveLength(0);
  }, 30_000);

  // mailgw has a user and a password, never an OAuth2 token: nodemailer does not use XOAUTH2 then.
  test("a relay offering only AUTH XOAUTH2: named as a login mailgw cannot use, not taken for a wrong password", async () => {
    const { relay, t, worker } = await setup({ authMethods: ["XOAUTH2"] });
    const id = seedDelivery(t);
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).attempts >= 1, 10_000, "an attempt");
    const error = deliveryOf(t.db, id).last_error ?? "";
    expect(error).toContain("the relay offers no login mailgw can use (AUTH XOAUTH2;");
    expect(error).not.toContain("check RELAY_SMTP_USER");
    expect(relay.received).toHaveLength(0);
  }, 30_000);

  test("a relay that requires a login, none configured: deferred (530 is not the message's fault), the error names the settings", async () => {
    const { relay, t, worker } = await setup({}, { RELAY_SMTP_USER: "", RELAY_SMTP_PASS: "" });
    const id = seedDelivery(t);
    worker.start();
    await waitFor(() => attemptsOf(t.db, id).length >= 1, 10_000, "attempted");
    await worker.stop();
    expect(deliveryOf(t.db, id).state).toBe("deferred");
    expect(attemptsOf(t.db, id)[0]!.reply).toStartWith("the relay requires a login: set RELAY_SMTP_USER and RELAY_SMTP_PASS: ");
    expect(attemptsOf(t.db, id)[0]!.reply).toContain("530");
    expect(relay.received).toHaveLength(0);
  }, 30_000);

  test("451 for the first 2 attempts, then delivered on the 3rd", async () => {
    const { relay, t, worker } = await setup();
    relay.tempFailures = 2;
    const id = seedDelivery(t);
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).state === "delivered", 10_000, "delivered");
    expect(relay.received).toHaveLength(1);
    const attempts = attemptsOf(t.db, id);
    expect(attempts.map((a) => a.ok)).toEqual([0, 0, 1]);
    expect(attempts[0]!.reply).toContain("451");
    expect(counter(t.db, "deferred:forward")).toBe(2);
    expect(counter(t.db, "delivered:forward")).toBe(1);
  }, 30_000);

  test("550 → failed at once, spool file kept for `queue retry`", async () => {
    const { relay, t, worker } = await setup();
    relay.mode = "permfail";
    const id = seedDelivery(t, { rule: "catch-all", category: "default" });
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).state === "failed", 10_000, "failed");
    expect(deliveryOf(t.db, id).attempts).toBe(1);
    expect(deliveryOf(t.db, id).last_error ?? "").toContain("550");
    expect(existsSync(join(t.dataDir, "spool", `${id}.eml`))).toBe(true);
    expect(countersOf(t, "failed:forward")).toEqual([{ rule: "catch-all", category: "default", n: 1 }]);
  }, 30_000);

  // Nothing to send, now or later: failed at once and listed (a backup restored without its
  // spool), not retried for QUEUE_MAX_AGE_HOURS.
  test("spool file missing → failed at the first attempt, nothing sent", async () => {
    const { relay, t, worker } = await setup();
    const id = seedDelivery(t);
    rmSync(join(t.dataDir, "spool", `${id}.eml`));
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).state === "failed", 10_000, "failed");
    expect(deliveryOf(t.db, id).attempts).toBe(1);
    expect(deliveryOf(t.db, id).last_error ?? "").toStartWith(`${MISSING_FILE_PREFIX}: `);
    expect(relay.received).toHaveLength(0);
  }, 30_000);

  test("a recipient the relay refuses (550) while it takes the others: a failed delivery of its own, retryable alone", async () => {
    const { relay, t, worker } = await setup();
    relay.refuseRecipients = ["gone@forward.example"];
    const id = seedDelivery(t, { target: ["sales@forward.example", "gone@forward.example"] });
    worker.start();
    const rows = () => t.db.query<{ id: number; target: string; state: string; last_error: string | null }, [string]>(
      "SELECT id, target, state, last_error FROM deliveries WHERE message_id = ? ORDER BY id").all(id);
    await waitFor(() => rows().length === 2 && rows()[0]!.state === "delivered", 10_000, "delivered, with a failed delivery for the refused one");
    const [taken, refused] = rows();
    expect(refused).toMatchObject({ target: '["gone@forward.example"]', state: "failed" });
    // The delivered one names only the recipient that took it (queue list showed both).
    expect(taken).toMatchObject({ target: '["sales@forward.example"]', state: "delivered" });
    expect(refused!.last_error).toContain("gone@forward.example");
    expect(refused!.last_error).toContain("550");
    expect(relay.received.map((m) => m.to)).toEqual([["sales@forward.example"]]);
    expect(counter(t.db, "delivered:forward")).toBe(1);
    expect(counter(t.db, "failed:forward")).toBe(1);
    expect(existsSync(join(t.dataDir, "spool", `${id}.eml`))).toBe(true); // `queue retry` needs it
    // The mailbox exists again: `queue retry` sends to that recipient only.
    relay.refuseRecipients = [];
    expect(retryNow(t.db, [refused!.id], Date.now())).toBe(1);
    await waitFor(() => rows()[1]!.state === "delivered", 10_000, "the refused recipient delivered after queue retry");
    expect(relay.received.map((m) => m.to)).toEqual([["sales@forward.example"], ["gone@forward.example"]]);
    await waitFor(() => !existsSync(join(t.dataDir, "spool", `${id}.eml`)), 5_000, "spool file released");
  }, 30_000);

  test("dropped connection → deferred, then delivered once the relay behaves", async () => {
    const { relay, t, worker } = await setup();
    relay.mode = "drop";
    const id = seedDelivery(t);
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).attempts >= 1, 10_000, "first attempt");
    expect(deliveryOf(t.db, id).state).not.toBe("failed");
    relay.mode = "ok";
    await waitFor(() => deliveryOf(t.db, id).state === "delivered", 10_000, "delivered");
    expect(relay.received).toHaveLength(1);
  }, 30_000);

  // A relay (or a proxy before it) that cuts the connection after the end of data of one
  // message only: that message waits on its own backoff, the others go on. Taken for the
  // relay's failure, it suspended the relay, came due again with every held forward when the
  // next message lifted the suspension, and was sent about once a retry period for days.
  test("a connection lost after one message's end of data defers that message on its own backoff; the relay is not suspended", async () => {
    const { relay, t, worker } = await setup({}, { QUEUE_RETRY_BASE_SECONDS: "4" });
    relay.dropWhen = (data) => data.includes("POISON");
    const poison = seedDelivery(t, { raw: SAMPLE_MESSAGE.replace("Subject: ", "Subject: POISON ") });
    const first = seedDelivery(t);
    worker.start();
    await waitFor(() => deliveryOf(t.db, poison).attempts === 1 && deliveryOf(t.db, first).state === "delivered", 10_000, "first round");
    const d = deliveryOf(t.db, poison);
    expect(d.state).toBe("deferred");
    expect(d.last_error ?? "").toContain("no reply to the end of data");
    expect(d.last_error ?? "").toContain("may arrive twice");
    const times = t.db.query<{ wait: number }, [string]>("SELECT next_attempt_at - updated_at AS wait FROM deliveries WHERE message_id = ?").get(poison);
    expect(times?.wait).toBeGreaterThanOrEqual(3_000); // 4 s ± 20%
    // Later mail goes at once, and does not bring the deferred one forward.
    const later = seedDelivery(t);
    worker.wake();
    await waitFor(() => deliveryOf(t.db, later).state === "delivered", 5_000, "a later message delivered");
    expect(relay.dropped).toBe(1);
    expect(deliveryOf(t.db, poison).attempts).toBe(1);
    relay.dropWhen = null;
    await waitFor(() => deliveryOf(t.db, poison).state === "delivered", 15_000, "delivered on its retry");
    expect(relay.received).toHaveLength(3);
  }, 30_000);

  // The relay closed the pooled connection while it was idle, and the close crossed our next
  // MAIL: sent again at once on a fresh connection (nothing of it had been sent), no deferral.
  test("a pooled connection that dies at MAIL: the message goes on a fresh one in the same attempt", async () => {
    const { relay, t, worker } = await setup();
    const first = seedDelivery(t);
    worker.start();
    await waitFor(() => deliveryOf(t.db, first).state === "delivered", 10_000, "first delivered");
    relay.dropMailFroms = 1;
    const second = seedDelivery(t);
    worker.wake();
    await waitFor(() => deliveryOf(t.db, second).state === "delivered", 10_000, "second delivered");
    expect(relay.dropMailFroms).toBe(0);
    expect(attemptsOf(t.db, second).map((a) => a.ok)).toEqual([1]);
    expect(relay.received).toHaveLength(2);
  }, 30_000);

  test("a stalled relay is cut off by the attempt deadline and retried", async () => {
    const { relay, t, worker } = await setup({}, {}, { attemptTimeoutMs: 500 });
    relay.mode = "stall-mail"; // before the message is sent: the deadline applies (see the next test for after)
    const id = seedDelivery(t);
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).attempts >= 1, 10_000, "first attempt");
    expect(attemptsOf(t.db, id)[0]!.reply ?? "").toMatch(/timed out|abort/i);
    relay.mode = "ok";
    await waitFor(() => deliveryOf(t.db, id).state === "delivered", 15_000, "delivered");
  }, 30_000);

  // RFC 5321 4.5.3.2.6: the reply to the end of data may take up to 10 minutes (the relay scans or
  // queues the message meanwhile). Giving up on it sends a second copy of a message the relay has.
  test("a relay that answers the end of data after the attempt deadline is waited for: one copy, one attempt", async () => {
    const { relay, t, worker } = await setup({}, {}, { attemptTimeoutMs: 500 });
    relay.dataReplyDelayMs = 1_500;
    const id = seedDelivery(t);
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).state === "delivered", 10_000, "delivered");
    await Bun.sleep(300); // a second copy would arrive now
    expect(relay.received).toHaveLength(1);
    expect(attemptsOf(t.db, id).map((a) => a.ok)).toEqual([1]);
  }, 30_000);

  test("a stalled relay with a backlog does not hold a webhook delivery back", async () => {
    const { relay, t, worker } = await setup({}, {}, { attemptTimeoutMs: 4_000 });
    const hook = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("ok") });
    cleanups.push(() => void hook.stop(true));
    relay.mode = "stall-mail";
    const forwards = Array.from({ length: 40 }, () => seedDelivery(t));
    worker.start();
    await waitFor(() => worker.inFlight() >= 32, 5_000, "the relay's slots all taken");
    const webhook = seedDelivery(t, { kind: "webhook", target: `http://127.0.0.1:${hook.port}/in` });
    worker.wake();
    await waitFor(() => deliveryOf(t.db, webhook).state === "delivered", 2_000, "webhook delivered beside the stalled forwards");
    expect(forwards.every((id) => deliveryOf(t.db, id).state !== "delivered")).toBe(true);
    relay.mode = "ok";
  }, 30_000);

  test("stalled webhook receivers (every webhook slot taken) do not hold forwards back", async () => {
    const { relay, t, worker } = await setup({}, {}, { attemptTimeoutMs: 4_000 });
    const hooks = Array.from({ length: 6 }, () =>
      Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Promise<Response>(() => {}) }), // never answers
    );
    cleanups.push(() => hooks.forEach((h) => void h.stop(true)));
    // Four paths each: a URL not yet known to answer gets one slot (slots.ts), 24 URLs fill all 16.
    for (const h of hooks) for (let i = 0; i < 4; i++) seedDelivery(t, { kind: "webhook", target: `http://127.0.0.1:${h.port}/in${i}` });
    worker.start();
    await waitFor(() => worker.inFlight() >= 16, 5_000, "the webhook slots all taken");
    const forwards = Array.from({ length: 10 }, () => seedDelivery(t));
    worker.wake();
    await waitFor(() => forwards.every((id) => deliveryOf(t.db, id).state === "delivered"), 3_000, "forwards delivered beside the stalled webhooks");
    expect(relay.received).toHaveLength(10);
  }, 30_000);

  test("too old → failed (QUEUE_MAX_AGE_HOURS), message kept on disk", async () => {
    const { relay, t, worker } = await setup({}, { QUEUE_MAX_AGE_HOURS: "1" });
    relay.mode = "tempfail";
    const id = seedDelivery(t, { createdAt: Date.now() - 2 * 3600 * 1000 });
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).state === "failed", 10_000, "failed");
    expect(deliveryOf(t.db, id).last_error ?? "").toContain("QUEUE_MAX_AGE_HOURS");
    expect(existsSync(join(t.dataDir, "spool", `${id}.eml`))).toBe(true);
    // `queue retry` gives it a fresh start: a 4xx now defers it (with a short backoff) instead of
    // failing it again at once, and it is delivered once the relay accepts.
    t.db.query("UPDATE deliveries SET attempts = 20 WHERE message_id = ?").run(id); // as after a long outage
    const before = deliveryOf(t.db, id).attempts;
    expect(retryNow(t.db, [deliveryOf(t.db, id).id], Date.now())).toBe(1);
    await waitFor(() => deliveryOf(t.db, id).attempts > before, 10_000, "attempt after the retry");
    expect(deliveryOf(t.db, id).state).toBe("deferred");
    const next = t.db.query<{ n: number }, [number]>("SELECT next_attempt_at - updated_at AS n FROM deliveries WHERE id = ?").get(deliveryOf(t.db, id).id);
    expect(next!.n).toBeLessThan(5_000); // the backoff restarts at the retry: not base × 2^20 (capped at 1 h)
    relay.mode = "ok";
    await waitFor(() => deliveryOf(t.db, id).state === "delivered", 10_000, "delivered after the retry");
  }, 30_000);

  test("relay down during intake, then up: deferred, then delivered", async () => {
    const { relay, t, worker } = await setup();
    const port = relay.port;
    await relay.close();
    const ids = [seedDelivery(t), seedDelivery(t), seedDelivery(t)];
    worker.start();
    await waitFor(() => ids.every((id) => deliveryOf(t.db, id).attempts >= 1), 10_000, "attempts while down");
    expect(ids.map((id) => deliveryOf(t.db, id).last_error ?? "").join()).toMatch(/ECONNREFUSED|ECONNECTION|ESOCKET|connect/i);
    const again = await startRelay({ port });
    cleanups.push(() => again.close());
    await waitFor(() => ids.every((id) => deliveryOf(t.db, id).state === "delivered"), 15_000, "delivered after relay is back");
    expect(again.received).toHaveLength(3);
  }, 30_000);

  test("RELAY_SMTP_SECURE=tls: TLS from the first byte (port 465), then AUTH and delivery", async () => {
    const { relay, t, worker } = await setup({ implicitTls: true, starttls: false }, { RELAY_SMTP_SECURE: "tls" });
    const id = seedDelivery(t);
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).state === "delivered", 10_000, "delivered");
    expect(relay.received.map((m) => m.secure)).toEqual([true]);
    expect(relay.authAttempts.map((a) => a.secure)).toEqual([true]);
    expect(relay.received[0]!.data.toString("binary")).toBe(SAMPLE_MESSAGE);
  }, 30_000);

  test("RELAY_SMTP_SECURE=tls against a relay that speaks plain SMTP: nothing sent in clear, deferred", async () => {
    const { relay, t, worker } = await setup({ starttls: false }, { RELAY_SMTP_SECURE: "tls" });
    const id = seedDelivery(t);
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).attempts >= 1, 10_000, "an attempt");
    expect(relay.authAttempts).toHaveLength(0);
    expect(relay.received).toHaveLength(0);
    expect(deliveryOf(t.db, id).state).toBe("deferred");
    expect(deliveryOf(t.db, id).last_error ?? "").toContain("set RELAY_SMTP_SECURE=starttls");
  }, 30_000);

  test("relay without STARTTLS: no credentials sent, deferred", async () => {
    const { relay, t, worker } = await setup({ starttls: false });
    const id = seedDelivery(t);
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).attempts >= 2, 10_000, "two attempts");
    expect(relay.authAttempts).toHaveLength(0);
    expect(relay.received).toHaveLength(0);
    expect(deliveryOf(t.db, id).state).not.toBe("failed");
    // The hint names the setting; the raw reply ("500 … not recognized") follows it.
    expect(deliveryOf(t.db, id).last_error ?? "").toMatch(/^(relay suspended: )?the relay refused STARTTLS, which RELAY_SMTP_SECURE=starttls requires/);
    expect(deliveryOf(t.db, id).last_error ?? "").toMatch(/ETLS: Error upgrading connection with STARTTLS: 5\d\d /);
  }, 30_000);

  test("a relay that stops offering STARTTLS after pooled deliveries never sees the credentials in clear", async () => {
    const { relay, t, worker } = await setup();
    const first = seedDelivery(t);
    worker.start();
    await waitFor(() => deliveryOf(t.db, first).state === "delivered", 10_000, "first delivered over TLS");
    expect(relay.authAttempts.every((a) => a.secure)).toBe(true);
    // The relay restarts on the same port without STARTTLS (a downgrade): the pooled session dies.
    const port = relay.port;
    await relay.close();
    const plain = await startRelay({ starttls: false, port });
    cleanups.push(() => plain.close());
    const second = seedDelivery(t);
    worker.wake();
    await waitFor(() => deliveryOf(t.db, second).attempts >= 2, 10_000, "two attempts");
    expect(plain.authAttempts).toHaveLength(0);
    expect(plain.received).toHaveLength(0);
    expect(deliveryOf(t.db, second).state).toBe("deferred");
  }, 30_000);

  test("a relay answering 454 to STARTTLS gets no credentials; the delivery is deferred", async () => {
    const seen: string[] = [];
    const server = createServer((socket) => {
      socket.on("error", () => {});
      socket.write("220 relay.test ESMTP\r\n");
      onLines(socket, (line) => {
        seen.push(line);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === "EHLO") socket.write("250-relay.test\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n");
        else if (verb === "STAR") socket.write("454 4.7.0 TLS not available due to local problem\r\n");
        else if (verb === "QUIT") socket.end("221 bye\r\n");
        else socket.write("530 5.7.0 Must issue a STARTTLS command first\r\n");
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const t = makeEnv(relayVars({ port: (server.address() as AddressInfo).port }));
    const worker = createDeliveryWorker({ config: t.config, db: t.db, logger: silentLogger, pollIntervalMs: 50 });
    cleanups.push(() => worker.stop());
    const id = seedDelivery(t);
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).attempts >= 1, 10_000, "an attempt");
    expect(seen.some((l) => /^STARTTLS/i.test(l))).toBe(true);
    expect(seen.filter((l) => /^(AUTH|MAIL|RCPT|DATA)/i.test(l) || l.includes("relaypass"))).toEqual([]);
    expect(deliveryOf(t.db, id).state).toBe("deferred");
    expect(deliveryOf(t.db, id).last_error ?? "").toContain("454");
  }, 30_000);

  test("RELAY_SMTP_TLS_VERIFY=true with a self-signed relay cert: no credentials, deferred", async () => {
    const { relay, t, worker } = await setup({}, { RELAY_SMTP_TLS_VERIFY: "true" });
    const id = seedDelivery(t);
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).attempts >= 1, 10_000, "an attempt");
    expect(relay.authAttempts).toHaveLength(0);
    expect(deliveryOf(t.db, id).state).not.toBe("failed");
    expect(deliveryOf(t.db, id).last_error ?? "").toMatch(/^relay suspended: relay certificate refused \(not signed by a trusted CA\): .*RELAY_SMTP_TLS_VERIFY=false if it is a private smarthost.*self.signed/);
  }, 30_000);

  test("100 messages reuse a few pooled connections", async () => {
    const { relay, t, worker } = await setup();
    const ids = Array.from({ length: 100 }, () => seedDelivery(t));
    worker.start();
    await waitFor(() => relay.received.length === 100, 20_000, "100 delivered");
    await waitFor(() => ids.every((id) => deliveryOf(t.db, id).state === "delivered"), 5_000, "states");
    expect(relay.connections).toBeLessThanOrEqual(8);
  }, 30_000);
});

describe("no relay configured", () => {
  test("forwards are held, then delivered after reloadRelay", async () => {
    const relay = await startRelay();
    cleanups.push(() => relay.close());
    const t = makeEnv({});
    expect(t.config.relay).toBeNull();
    const worker = createDeliveryWorker({ config: t.config, db: t.db, logger: silentLogger, pollIntervalMs: 50 });
    cleanups.push(() => worker.stop());
    const id = seedDelivery(t);
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).state === "held", 5_000, "held");
    expect(deliveryOf(t.db, id).attempts).toBe(0);
    const withRelay = makeEnv(relayVars(relay)).config.relay;
    worker.reloadRelay(withRelay);
    await waitFor(() => deliveryOf(t.db, id).state === "delivered", 10_000, "delivered");
    expect(relay.received).toHaveLength(1);
  }, 30_000);

  test("a forward held after the relay was set (intake decided before the reload) is delivered within a poll", async () => {
    const { relay, t, worker } = await setup();
    worker.start();
    await Bun.sleep(100); // the start's release of held rows is over
    const id = seedDelivery(t, { state: "held" });
    await waitFor(() => deliveryOf(t.db, id).state === "delivered", 5_000, "delivered");
    expect(relay.received).toHaveLength(1);
  }, 30_000);
});
