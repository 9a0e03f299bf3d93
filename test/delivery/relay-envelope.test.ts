/**
 * The relayed envelope: UTF-8 domains as A-labels, SMTPUTF8 only where a local part needs it, a
 * relay without SMTPUTF8 never sent such an envelope (553 5.6.7 → failed, as Postfix), and SIZE=
 * so a relay with a lower limit refuses at MAIL FROM, before the transfer. Real smtp-server relay.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { silentLogger } from "../../src/log/logger.ts";
import { asciiAddress, relayEnvelope } from "../../src/act/relay-envelope.ts";
import { createDeliveryWorker } from "../../src/queue/worker.ts";
import { attemptsOf, deliveryOf, makeEnv, relayVars, SAMPLE_MESSAGE, seedDelivery, startRawRelay, startRelay, waitFor, type RelayOptions } from "./helpers.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

async function setup(relayOpts: RelayOptions) {
  const relay = await startRelay(relayOpts);
  cleanups.push(() => relay.close());
  const t = makeEnv(relayVars(relay));
  const worker = createDeliveryWorker({ config: t.config, db: t.db, logger: silentLogger, pollIntervalMs: 50 });
  cleanups.push(() => worker.stop());
  return { relay, t, worker };
}

describe("relayEnvelope", () => {
  test("ASCII addresses and the null sender are unchanged", () => {
    expect(relayEnvelope("", ["a@b.example"])).toEqual({ from: "", to: ["a@b.example"], smtpUtf8Address: null });
    expect(relayEnvelope("x@y.example", ["a@[192.0.2.1]"]).smtpUtf8Address).toBeNull();
  });

  test("a UTF-8 domain becomes its A-label; a UTF-8 local part needs SMTPUTF8", () => {
    expect(asciiAddress("info@bücher.example")).toBe("info@xn--bcher-kva.example");
    expect(asciiAddress("Info@Bücher.Example")).toBe("Info@xn--bcher-kva.example");
    expect(asciiAddress('"a@b"@bücher.example')).toBe('"a@b"@xn--bcher-kva.example');
    expect(asciiAddress("jörg@example.org")).toBeNull();
    expect(asciiAddress("jörg@bücher.example")).toBeNull();
    const e = relayEnvelope("info@bücher.example", ["sales@company.com", "jörg@example.org", "björn@example.org"]);
    expect(e.from).toBe("info@xn--bcher-kva.example");
    expect(e.to).toEqual(["sales@company.com", "jörg@example.org", "björn@example.org"]);
    expect(e.smtpUtf8Address).toBe("jörg@example.org");
    // A domain IDNA refuses has no ASCII form: never `local@` with the domain gone.
    expect(asciiAddress("info@%bücher.example")).toBeNull();
    expect(asciiAddress("info@bad\u0000ü")).toBeNull();
    expect(relayEnvelope("a@b.example", ["info@%bücher.example"]).smtpUtf8Address).toBe("info@%bücher.example");
  });
});

describe("relaying UTF-8 envelopes", () => {
  test("relay without SMTPUTF8: a UTF-8 local part fails at once (5.6.7) with no MAIL sent; A-label domains and ASCII mail still go", async () => {
    // The raw relay offers 8BITMIME only and records the command lines as they came over the wire.
    const { server, port, capture } = await startRawRelay();
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const t = makeEnv({ RELAY_SMTP_HOST: "127.0.0.1", RELAY_SMTP_PORT: String(port), RELAY_SMTP_SECURE: "none" });
    const worker = createDeliveryWorker({ config: t.config, db: t.db, logger: silentLogger, pollIntervalMs: 50, maxInFlight: 1 });
    cleanups.push(() => worker.stop());
    const local = seedDelivery(t, { mailFrom: "jörg@sender.example" });
    const domain = seedDelivery(t, { mailFrom: "info@bücher.example", target: ["verkauf@müller.example"] });
    const plain = seedDelivery(t, { mailFrom: "alice@example.org" });
    worker.start();
    await waitFor(() => deliveryOf(t.db, local).state === "failed" && [domain, plain].every((id) => deliveryOf(t.db, id).state === "delivered"), 10_000, "settled");
    const [attempt] = attemptsOf(t.db, local);
    expect(attempt!.ok).toBe(0);
    expect(attempt!.reply).toContain("5.6.7");
    expect(attempt!.reply).toContain("jörg@sender.example");
    const envelope = capture.commands.filter((c) => /^(MAIL|RCPT)/.test(c));
    expect(envelope).toContain("MAIL FROM:<info@xn--bcher-kva.example>");
    expect(envelope).toContain("RCPT TO:<verkauf@xn--mller-kva.example>");
    expect(envelope).toContain("MAIL FROM:<alice@example.org>");
    expect(envelope.filter((c) => c.startsWith("MAIL"))).toHaveLength(2);
    expect(envelope.every((c) => /^[\x20-\x7e]*$/.test(c))).toBe(true);
  }, 30_000);

  test("relay with SMTPUTF8: a UTF-8 local part goes with the SMTPUTF8 parameter, an ASCII envelope without it", async () => {
    const { relay, t, worker } = await setup({});
    const local = seedDelivery(t, { mailFrom: "jörg@sender.example", target: ["björn@company.com"] });
    const plain = seedDelivery(t, { mailFrom: "alice@example.org" });
    worker.start();
    await waitFor(() => [local, plain].every((id) => deliveryOf(t.db, id).state === "delivered"), 10_000, "delivered");
    const utf8 = relay.received.find((m) => m.from === "jörg@sender.example");
    expect(utf8?.to).toEqual(["björn@company.com"]);
    expect(utf8?.smtpUtf8).toBe(true);
    expect(relay.received.find((m) => m.from === "alice@example.org")?.smtpUtf8).toBe(false);
  }, 30_000);
});

describe("SIZE", () => {
  test("SIZE= carries the message size; over the relay's limit → failed at once (552 5.3.4), not even MAIL FROM sent", async () => {
    const { relay, t, worker } = await setup({ sizeLimit: 2_000 });
    const small = seedDelivery(t, { mailFrom: "small@example.org" });
    const big = seedDelivery(t, { mailFrom: "big@example.org", raw: SAMPLE_MESSAGE + "x".repeat(78).concat("\r\n").repeat(40) });
    worker.start();
    await waitFor(() => deliveryOf(t.db, small).state === "delivered" && deliveryOf(t.db, big).state === "failed", 10_000, "settled");
    expect(relay.received.map((m) => m.from)).toEqual(["small@example.org"]);
    expect(Number(relay.received[0]!.size)).toBe(Buffer.byteLength(SAMPLE_MESSAGE));
    const attempts = attemptsOf(t.db, big);
    expect(attempts).toHaveLength(1);
    expect(attempts[0]!.reply).toContain("552 5.3.4");
    expect(relay.mailFroms).not.toContain("big@example.org");
  }, 30_000);
});
