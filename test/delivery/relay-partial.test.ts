/**
 * A forward the relay takes for some recipients and refuses for others, through the real worker
 * and a real smtp-server relay: the recipients that took the message are done and get exactly
 * one copy; a 4xx recipient gets a deferred delivery of its own, retried with backoff until it
 * takes the message (one copy too); a 5xx one a failed delivery; one deferred past
 * QUEUE_MAX_AGE_HOURS fails at once; a 4xx for every recipient retries the whole delivery; a 5xx
 * and a 4xx with nobody taking it: the 5xx one fails at once, the 4xx one alone is retried.
 */
import { afterEach, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createLogger, silentLogger } from "../../src/log/logger.ts";
import { listEntries } from "../../src/queue/queue-admin.ts";
import { PENDING_STATES } from "../../src/queue/queue-store.ts";
import { createDeliveryWorker, type DeliveryWorker } from "../../src/queue/worker.ts";
import {
  counter, makeEnv, relayVars, seedDelivery, startRelay, waitFor, type ScriptedRelay, type TestEnv,
} from "./helpers.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

async function setup(vars: Record<string, string> = {}, logger = silentLogger): Promise<{ relay: ScriptedRelay; t: TestEnv; worker: DeliveryWorker }> {
  const relay = await startRelay();
  cleanups.push(() => relay.close());
  const t = makeEnv({ ...relayVars(relay), ...vars });
  const worker = createDeliveryWorker({ config: t.config, db: t.db, logger, pollIntervalMs: 50 });
  cleanups.push(() => worker.stop());
  return { relay, t, worker };
}

interface Row {
  id: number;
  target: string;
  state: string;
  attempts: number;
  created_at: number;
  last_error: string | null;
}

function rowsOf(t: TestEnv, messageId: string): Row[] {
  return t.db
    .query<Row, [string]>("SELECT id, target, state, attempts, created_at, last_error FROM deliveries WHERE message_id = ? ORDER BY id")
    .all(messageId);
}

function attemptsOfDelivery(t: TestEnv, deliveryId: number): { ok: number; reply: string }[] {
  return t.db.query<{ ok: number; reply: string }, [number]>("SELECT ok, reply FROM delivery_attempts WHERE delivery_id = ? ORDER BY id").all(deliveryId);
}

/** How many copies the relay took for `address`. */
function copiesFor(relay: ScriptedRelay, address: string): number {
  return relay.received.filter((m) => m.to.includes(address)).length;
}

test("250 for a, 450 for b: a gets one copy; only b stays queued, is retried alone and gets one copy", async () => {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ level: "info", format: "json", write: (s) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  const { relay, t, worker } = await setup({}, logger);
  relay.deferRecipients.set("b@company.com", Infinity);
  const id = seedDelivery(t, { target: ["a@company.com", "b@company.com"], createdAt: Date.now() - 60_000 });
  const spoolFile = join(t.dataDir, "spool", `${id}.eml`);
  worker.start();

  // b is refused on every try: its own delivery is retried (with backoff) while a is left alone.
  await waitFor(() => rowsOf(t, id).length === 2 && rowsOf(t, id)[1]!.attempts >= 4, 15_000, "b's delivery retried 3 times");
  const [original, split] = rowsOf(t, id);
  expect(original).toMatchObject({ target: '["a@company.com"]', state: "delivered", attempts: 1 });
  expect(split!.target).toBe('["b@company.com"]');
  expect(split!.created_at).toBe(original!.created_at); // its age counts from the original queueing
  expect(split!.last_error).toContain("450");
  expect(copiesFor(relay, "a@company.com")).toBe(1);
  expect(copiesFor(relay, "b@company.com")).toBe(0);
  expect(relay.received.map((m) => m.to)).toEqual([["a@company.com"]]);
  expect(existsSync(spoolFile)).toBe(true); // b's delivery still needs it
  const [first] = attemptsOfDelivery(t, original!.id);
  expect(first!.ok).toBe(1);
  expect(first!.reply).toMatch(/deferred: b@company\.com: 450/);
  expect(counter(t.db, "delivered:forward")).toBe(1); // a, once
  expect(counter(t.db, "failed:forward")).toBe(0);

  // `queue list`: one row for b alone, with its attempts and the relay's 450.
  const listed = listEntries(t.db, PENDING_STATES, Date.now()).filter((e) => e.id === id);
  expect(listed).toHaveLength(1);
  expect(listed[0]).toMatchObject({ delivery: split!.id, kind: "forward", target: "b@company.com", rule: "test-rule", category: "sales" });
  expect(["deferred", "delivering", "queued"]).toContain(listed[0]!.state);
  expect(listed[0]!.attempts).toBeGreaterThanOrEqual(4);
  expect(listed[0]!.lastError).toContain("450");
  const splitLog = lines.find((l) => l.msg === "deferred" && l.id === id && l.delivery === split!.id && Array.isArray(l.recipients));
  expect(splitLog).toMatchObject({ recipients: ["b@company.com"] });
  expect(lines.filter((l) => l.msg === "delivered" && l.id === id)).toHaveLength(1);

  // b's mailbox takes mail again: one copy for b, a still has exactly one.
  relay.deferRecipients.delete("b@company.com");
  await waitFor(() => rowsOf(t, id).every((r) => r.state === "delivered"), 15_000, "b delivered");
  expect(relay.received.map((m) => m.to)).toEqual([["a@company.com"], ["b@company.com"]]);
  expect(rowsOf(t, id)).toHaveLength(2);
  const bAttempts = attemptsOfDelivery(t, split!.id);
  expect(bAttempts.at(-1)!.ok).toBe(1);
  expect(bAttempts.slice(0, -1).every((a) => a.ok === 0 && a.reply.includes("450"))).toBe(true);
  expect(counter(t.db, "delivered:forward")).toBe(2); // a's transaction, then b's
  expect(counter(t.db, "deferred:forward")).toBe(bAttempts.length); // the split, then each 450 to b alone
  await waitFor(() => !existsSync(spoolFile), 5_000, "spool file released once b is delivered");
}, 30_000);

test("450 for b twice, then 250: exactly one copy each; b's delivery carries on the original's attempt count", async () => {
  const { relay, t, worker } = await setup();
  relay.deferRecipients.set("b@company.com", 2);
  const id = seedDelivery(t, { target: ["a@company.com", "b@company.com"] });
  worker.start();
  await waitFor(() => copiesFor(relay, "b@company.com") > 0 && rowsOf(t, id).every((r) => r.state === "delivered"), 15_000, "b delivered");
  expect(copiesFor(relay, "a@company.com")).toBe(1); // before the fix: 3, one per retry of the whole delivery
  expect(relay.received.map((m) => m.to)).toEqual([["a@company.com"], ["b@company.com"]]);
  const [original, split] = rowsOf(t, id);
  expect(original!.attempts).toBe(1);
  expect(split!.attempts).toBe(3); // the try that split it, one more 450, the 250
  expect(attemptsOfDelivery(t, original!.id).map((a) => a.ok)).toEqual([1]);
  expect(attemptsOfDelivery(t, split!.id).map((a) => a.ok)).toEqual([0, 1]);
  expect(counter(t.db, "delivered:forward")).toBe(2);
  expect(counter(t.db, "deferred:forward")).toBe(2);
  await waitFor(() => !existsSync(join(t.dataDir, "spool", `${id}.eml`)), 5_000, "spool file released");
}, 30_000);

test("550 for b and 450 for c in one attempt: b failed, c deferred then delivered, a one copy", async () => {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ level: "info", format: "json", write: (s) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  const { relay, t, worker } = await setup({}, logger);
  relay.refuseRecipients = ["b@company.com"];
  relay.deferRecipients.set("c@company.com", 1);
  const id = seedDelivery(t, { target: ["a@company.com", "b@company.com", "c@company.com"] });
  // Two earlier attempts failed as a whole: this is the third, for the log and for `queue list`.
  t.db.query("UPDATE deliveries SET attempts = 2 WHERE message_id = ?").run(id);
  worker.start();
  await waitFor(() => rowsOf(t, id).length === 3 && rowsOf(t, id)[2]!.state === "delivered", 15_000, "c delivered");
  const rows = rowsOf(t, id).map((r) => [r.target, r.state]);
  expect(rows).toEqual([
    ['["a@company.com"]', "delivered"], // only the recipient that took it
    ['["b@company.com"]', "failed"],
    ['["c@company.com"]', "delivered"],
  ]);
  expect(rowsOf(t, id)[1]!.last_error).toContain("550");
  // b's failure is logged under its own delivery's number, the one `queue list` shows for b.
  const refusedLog = lines.find((l) => l.msg === "failed" && l.id === id && Array.isArray(l.recipients));
  expect(refusedLog).toMatchObject({ delivery: rowsOf(t, id)[1]!.id, recipients: ["b@company.com"], attempt: 3 });
  expect(rowsOf(t, id)[1]!.attempts).toBe(3); // as the log says, and as c's deferred delivery counts
  // Each line of the attempt that split them names only its own recipients as the target, as
  // `queue list` does: the "delivered" line must not name b and c, which did not take it.
  const splitAttempt = lines.filter((l) => l.id === id && l.attempt === 3);
  expect(splitAttempt.map((l) => [l.msg, String(l.target).replace(/^.* → /, "")])).toEqual([
    ["failed", "b@company.com"],
    ["deferred", "c@company.com"],
    ["delivered", "a@company.com"],
  ]);
  expect(relay.received.map((m) => m.to)).toEqual([["a@company.com"], ["c@company.com"]]);
  expect(counter(t.db, "delivered:forward")).toBe(2);
  expect(counter(t.db, "deferred:forward")).toBe(1);
  expect(counter(t.db, "failed:forward")).toBe(1);
  expect(existsSync(join(t.dataDir, "spool", `${id}.eml`))).toBe(true); // b's failed delivery keeps it for `queue retry`
}, 30_000);

test("a deferred recipient of a delivery older than QUEUE_MAX_AGE_HOURS fails at once; a is delivered", async () => {
  const { relay, t, worker } = await setup({ QUEUE_MAX_AGE_HOURS: "1" });
  relay.deferRecipients.set("b@company.com", Infinity);
  const id = seedDelivery(t, { target: ["a@company.com", "b@company.com"], createdAt: Date.now() - 2 * 3600 * 1000 });
  worker.start();
  await waitFor(() => rowsOf(t, id).length === 2, 15_000, "split");
  const [original, split] = rowsOf(t, id);
  expect(original!.state).toBe("delivered");
  expect(split).toMatchObject({ target: '["b@company.com"]', state: "failed" });
  expect(split!.last_error).toContain("QUEUE_MAX_AGE_HOURS");
  expect(split!.last_error).toContain("450");
  expect(counter(t.db, "failed:forward")).toBe(1);
  expect(counter(t.db, "deferred:forward")).toBe(0);
  expect(existsSync(join(t.dataDir, "spool", `${id}.eml`))).toBe(true);
  expect(relay.received.map((m) => m.to)).toEqual([["a@company.com"]]);
}, 30_000);

test("450 for every recipient: nothing was sent, the whole delivery is retried (no split)", async () => {
  const { relay, t, worker } = await setup();
  relay.deferRecipients.set("a@company.com", 1);
  relay.deferRecipients.set("b@company.com", 1);
  const id = seedDelivery(t, { target: ["a@company.com", "b@company.com"] });
  worker.start();
  await waitFor(() => rowsOf(t, id)[0]!.state === "delivered", 15_000, "delivered");
  expect(rowsOf(t, id)).toHaveLength(1);
  expect(rowsOf(t, id)[0]!.attempts).toBe(2);
  expect(attemptsOfDelivery(t, rowsOf(t, id)[0]!.id)[0]!.reply).toContain("450");
  expect(relay.received.map((m) => m.to)).toEqual([["a@company.com", "b@company.com"]]);
}, 30_000);

test("550 for a and 450 for b, nobody took it: a failed at once with its 550, only b is retried", async () => {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ level: "info", format: "json", write: (s) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  const { relay, t, worker } = await setup({ QUEUE_RETRY_BASE_SECONDS: "0.3" }, logger);
  relay.refuseRecipients = ["a@company.com"];
  // b's mailbox stays busy: before, a (which does not exist) waited with it, retried for
  // QUEUE_MAX_AGE_HOURS under b's 450, its own 550 shown nowhere.
  relay.deferRecipients.set("b@company.com", Infinity);
  const id = seedDelivery(t, { target: ["a@company.com", "b@company.com"] });
  worker.start();
  await waitFor(() => rowsOf(t, id).length === 2 && rowsOf(t, id)[0]!.attempts >= 2, 15_000, "a split off, b retried");
  const [kept, refused] = rowsOf(t, id);
  expect(refused).toMatchObject({ target: '["a@company.com"]', state: "failed", attempts: 1 });
  expect(refused!.last_error).toContain("550");
  expect(kept).toMatchObject({ target: '["b@company.com"]', state: "deferred" });
  expect(kept!.last_error).toContain("450");
  expect(counter(t.db, "failed:forward")).toBe(1);
  const first = lines.filter((l) => l.id === id && l.attempt === 1).map((l) => [l.msg, String(l.target).replace(/^.* → /, ""), "next_attempt" in l]);
  expect(first).toEqual([["failed", "a@company.com", false], ["deferred", "b@company.com", true]]);
  // The retry asks for b alone.
  expect(relay.mailFroms.length).toBeGreaterThanOrEqual(2);
  expect(relay.received).toEqual([]);
  relay.deferRecipients.set("b@company.com", 0);
  await waitFor(() => rowsOf(t, id)[0]!.state === "delivered", 15_000, "b delivered");
  expect(relay.received.map((m) => m.to)).toEqual([["b@company.com"]]);
  expect(rowsOf(t, id)).toHaveLength(2);
}, 30_000);
