/**
 * The relay refuses some recipients at RCPT and then the data itself (its reply to the end of
 * data), through the real worker and a real smtp-server relay. The data's reply applies only to
 * the recipients RCPT accepted: each recipient gets the outcome of its own reply, as Postfix does.
 * Before, the data's reply decided for all: a 5xx failed a recipient the relay had only deferred
 * (450), and a 4xx kept retrying a recipient it had refused for good (550), its reply shown nowhere.
 */
import { afterEach, expect, test } from "bun:test";
import { silentLogger } from "../../src/log/logger.ts";
import { createDeliveryWorker } from "../../src/queue/worker.ts";
import { counter, makeEnv, relayVars, seedDelivery, startRelay, waitFor, type ScriptedRelay, type TestEnv } from "./helpers.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

async function setup(): Promise<{ relay: ScriptedRelay; t: TestEnv; start: () => void }> {
  const relay = await startRelay();
  cleanups.push(() => relay.close());
  const t = makeEnv({ ...relayVars(relay), QUEUE_RETRY_BASE_SECONDS: "0.3" });
  const worker = createDeliveryWorker({ config: t.config, db: t.db, logger: silentLogger, pollIntervalMs: 50 });
  cleanups.push(() => worker.stop());
  return { relay, t, start: () => worker.start() };
}

function rowsOf(t: TestEnv, messageId: string): { target: string; state: string; last_error: string | null }[] {
  return t.db.query<{ target: string; state: string; last_error: string | null }, [string]>(
    "SELECT target, state, last_error FROM deliveries WHERE message_id = ? ORDER BY id",
  ).all(messageId);
}

test("a accepted, b 450 at RCPT, the data refused with 550: a fails with the 550, b is deferred and delivered later", async () => {
  const { relay, t, start } = await setup();
  relay.mode = "permfail"; // 550 to the end of data
  relay.deferRecipients.set("b@company.com", 1);
  const id = seedDelivery(t, { target: ["a@company.com", "b@company.com"] });
  start();
  await waitFor(() => rowsOf(t, id).length === 2, 15_000, "split");
  relay.mode = "ok"; // b's retry: its mailbox takes mail again, the relay the data
  await waitFor(() => rowsOf(t, id)[0]!.state === "delivered", 15_000, "b delivered");
  const [kept, refused] = rowsOf(t, id);
  expect(refused).toMatchObject({ target: '["a@company.com"]', state: "failed" });
  expect(refused!.last_error).toContain("a@company.com: 550");
  expect(kept).toMatchObject({ target: '["b@company.com"]', state: "delivered" });
  expect(relay.received.map((m) => m.to)).toEqual([["b@company.com"]]);
  expect(counter(t.db, "failed:forward")).toBe(1);
}, 30_000);

test("a accepted, c 550 at RCPT, the data deferred with 451: c fails at once with its 550, a alone is retried", async () => {
  const { relay, t, start } = await setup();
  relay.mode = "tempfail"; // 451 to the end of data
  relay.refuseRecipients = ["c@company.com"];
  const id = seedDelivery(t, { target: ["a@company.com", "c@company.com"] });
  start();
  // After the first attempt: c failed with its own 550, a waits alone for its retry.
  await waitFor(() => rowsOf(t, id).length === 2, 15_000, "split");
  const [waiting, refused] = rowsOf(t, id);
  expect(refused).toMatchObject({ target: '["c@company.com"]', state: "failed" });
  expect(refused!.last_error).toContain("c@company.com: 550");
  expect(waiting!.target).toBe('["a@company.com"]');
  expect(waiting!.last_error).toContain("451");
  const asked = relay.mailFroms.length;
  relay.mode = "ok";
  await waitFor(() => rowsOf(t, id)[0]!.state === "delivered", 15_000, "a delivered");
  expect(relay.mailFroms.length).toBeGreaterThan(asked);
  expect(relay.received.map((m) => m.to)).toEqual([["a@company.com"]]);
}, 30_000);
