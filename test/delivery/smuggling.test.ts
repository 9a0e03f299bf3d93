/**
 * SMTP smuggling (SPEC §4): a stored message carrying bare-CR / bare-LF end-of-data look-alikes
 * reaches the relay as exactly one message, and the bytes on the wire between DATA and the
 * final CRLF.CRLF contain no bare CR and no bare LF. The relay here is a raw TCP server that
 * records every byte, so nothing between mailgw and the capture can clean the stream up.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { countBareLineEndings, normalizeLineEndings } from "../../src/act/normalize-crlf.ts";
import { silentLogger } from "../../src/log/logger.ts";
import { createDeliveryWorker } from "../../src/queue/worker.ts";
import { deliveryOf, makeEnv, seedDelivery, startRawRelay, startRelay, relayVars, waitFor } from "./helpers.ts";

const PAYLOADS = [
  "\n.\n", "\r.\r", "\r\n.\r\r\n", "\r\r\n.\r\r\n", "\r.\n", "\n.\r", "\n.\r\n", "\r\n.\n", "\r.\r\n",
  "\r\n.\r", "\r\n\x00.\r\n", "\r\n.\x00\r\n", "\n\n.\n\n", "\r\n.\n.\r\n",
];
const SMUGGLED = "MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@company.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nowned\r\n.\r\n";

function messageWith(payload: string): string {
  return `From: a@example.org\r\nTo: b@company.com\r\nSubject: smuggle test\r\n\r\nbefore${payload}${SMUGGLED}after\r\n`;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

describe("smuggling payloads reach the relay as one message each", () => {
  test("raw capture: one MAIL per message, no bare CR/LF inside DATA", async () => {
    const { server, port, capture } = await startRawRelay();
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const t = makeEnv({ RELAY_SMTP_HOST: "127.0.0.1", RELAY_SMTP_PORT: String(port), RELAY_SMTP_SECURE: "none" });
    const worker = createDeliveryWorker({ config: t.config, db: t.db, logger: silentLogger, pollIntervalMs: 50, maxInFlight: 1 });
    cleanups.push(() => worker.stop());
    const ids = PAYLOADS.map((p) => seedDelivery(t, { raw: messageWith(p) }));
    worker.start();
    await waitFor(() => ids.every((id) => deliveryOf(t.db, id).state === "delivered"), 15_000, "all delivered");
    expect(capture.bodies).toHaveLength(PAYLOADS.length);
    expect(capture.commands.filter((c) => /^MAIL FROM/i.test(c))).toHaveLength(PAYLOADS.length);
    expect(capture.commands.some((c) => c.includes("attacker"))).toBe(false);
    expect(capture.commands.filter((c) => /^DATA$/i.test(c))).toHaveLength(PAYLOADS.length);
    for (const body of capture.bodies) {
      expect(countBareLineEndings(body)).toBe(0);
      const text = body.toString("latin1");
      expect(text).toContain("MAIL FROM:<evil@attacker.example>"); // still inside the one message, as text
      expect(text.endsWith("after")).toBe(true);
    }
    // each body is exactly the normalized original (after undoing dot-stuffing)
    const sent = capture.bodies.map((b) => b.toString("latin1").replace(/\r\n\.\./g, "\r\n.").replace(/^\.\./, "."));
    const expected = PAYLOADS.map((p) => Buffer.from(normalizeLineEndings(Buffer.from(messageWith(p), "latin1"))).toString("latin1").replace(/\r\n$/, ""));
    expect(sent.sort()).toEqual(expected.sort());
  }, 30_000);

  test("through a real smtp-server relay with STARTTLS + AUTH: exactly one message per delivery", async () => {
    const relay = await startRelay();
    cleanups.push(() => relay.close());
    const t = makeEnv(relayVars(relay));
    const worker = createDeliveryWorker({ config: t.config, db: t.db, logger: silentLogger, pollIntervalMs: 50 });
    cleanups.push(() => worker.stop());
    const ids = PAYLOADS.map((p) => seedDelivery(t, { raw: messageWith(p) }));
    worker.start();
    await waitFor(() => ids.every((id) => deliveryOf(t.db, id).state === "delivered"), 15_000, "all delivered");
    expect(relay.received).toHaveLength(PAYLOADS.length);
    for (const m of relay.received) {
      expect(m.to).toEqual(["sales@company.com"]);
      expect(countBareLineEndings(m.data)).toBe(0);
      expect(m.data.toString("latin1")).toContain("after");
    }
  }, 30_000);
});
