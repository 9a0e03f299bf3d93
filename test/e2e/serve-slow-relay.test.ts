/**
 * The compiled `mailgw serve` forwarding to a relay that answers the end of data late (65 s: a
 * smarthost scanning the message, a busy provider): RFC 5321 4.5.3.2.6 gives it 10 minutes. The
 * relay has the message before it answers, so giving up on the reply (the 60 s socket timeout,
 * the 120 s attempt deadline) and retrying would deliver it twice. Expected: one attempt,
 * delivered, one copy at the relay. Takes ~70 s.
 */
import { afterAll, afterEach, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import nodemailer from "nodemailer";
import { relayVars, startRelay } from "../delivery/helpers.ts";
import { cleanupBinary, queueList, serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: fwd, priority: 10, category: ops, action: forward, forward_to: [ops@forward.example], conditions: [{ field: size, operator: gt, value: 0 }] }
`;

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);
afterAll(() => cleanupBinary(), 60_000);

test("a relay answering the end of data after 65 s: waited for, delivered once, no retry", async () => {
  const relay = await startRelay();
  cleanups.push(() => relay.close());
  relay.dataReplyDelayMs = 65_000;
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), RULES);
  const s: ServeProcess = await startServe("binary", dir, { ...relayVars(relay), QUEUE_RETRY_BASE_SECONDS: "1" });
  cleanups.push(async () => {
    if (s.proc.exitCode === null) await s.stop("SIGKILL");
  });
  const t = nodemailer.createTransport({ host: "127.0.0.1", port: s.smtpPort, secure: false, ignoreTLS: true });
  const info = await t.sendMail({ from: "alice@example.org", to: "bob@company.com", subject: "slow relay", text: "scanned slowly" });
  t.close();
  const id = /Queued as (\S+)/.exec(info.response)?.[1] ?? "";
  const outcome = await s.waitForLog((l) => l.id === id && (l.msg === "delivered" || l.msg === "deferred" || l.msg === "failed"), 90_000);
  expect({ msg: outcome.msg, error: outcome.error }).toEqual({ msg: "delivered", error: undefined });
  expect(outcome.attempt).toBe(1);
  await Bun.sleep(2_000); // a retry would reach the relay now
  expect(relay.received).toHaveLength(1);
  expect(await queueList(s.dir)).toEqual([]);
  expect(await s.stop()).toBe(0);
}, 120_000);
