/**
 * finishAttempts with recipients the relay deferred (4xx) while it took the message for the
 * others: the attempt's result and the deferred recipients' own delivery commit together or not
 * at all (a crash, or a database error, can never leave the forward delivered with b gone),
 * the new row continues the original (age, attempts), keeps the spool file, and its counters
 * are bumped with the attempt's.
 */
import { afterEach, expect, test } from "bun:test";
import { claimDue, finishAttempts, type AttemptRecord, type ClaimedDelivery } from "../../src/queue/queue-store.ts";
import type { NextStep } from "../../src/queue/retry.ts";
import { counter, makeEnv, seedDelivery, type TestEnv } from "../delivery/helpers.ts";

const envs: TestEnv[] = [];
afterEach(() => {
  for (const t of envs.splice(0)) t.db.close();
});

const QUEUED_AT = 1_700_000_000_000;
const AT = QUEUED_AT + 5 * 60_000;

function claimOne(t: TestEnv): ClaimedDelivery {
  const [d] = claimDue(t.db, AT, { forwards: 10, webhooks: 0, webhookTargets: [] }, (c) => c);
  if (!d) throw new Error("nothing claimed");
  return d;
}

function partialRecord(d: ClaimedDelivery, deferredStep: NextStep): AttemptRecord {
  return {
    delivery: d,
    at: AT,
    durationMs: 40,
    target: "127.0.0.1:587 → a@company.com,b@company.com",
    ok: true,
    reply: "250 Ok: queued (deferred: b@company.com: 450 4.2.1 Mailbox busy)",
    step: { state: "delivered", nextAttemptAt: AT + 40, reason: null },
    deferred: { recipients: ["b@company.com"], error: "recipients deferred by the relay: b@company.com: 450 4.2.1 Mailbox busy", step: deferredStep },
  };
}

interface Row {
  id: number;
  target: string;
  state: string;
  attempts: number;
  created_at: number;
  next_attempt_at: number;
  last_error: string | null;
  retry_from: number | null;
  retry_attempts: number;
}

function rows(t: TestEnv): Row[] {
  return t.db
    .query<Row, []>("SELECT id, target, state, attempts, created_at, next_attempt_at, last_error, retry_from, retry_attempts FROM deliveries ORDER BY id")
    .all();
}

function setup(): TestEnv {
  const t = makeEnv();
  envs.push(t);
  seedDelivery(t, { target: ["a@company.com", "b@company.com"], createdAt: QUEUED_AT });
  return t;
}

test("the delivered attempt and b's deferred delivery are one transaction: a failure in the split rolls back both", () => {
  const t = setup();
  const d = claimOne(t);
  t.db.run(`CREATE TRIGGER refuse_split BEFORE INSERT ON deliveries WHEN NEW.target = '["b@company.com"]'
            BEGIN SELECT RAISE(ABORT, 'database or disk is full (test)'); END`);
  const deferredStep: NextStep = { state: "deferred", nextAttemptAt: AT + 60_000, reason: null };
  expect(() => finishAttempts(t.db, [partialRecord(d, deferredStep)])).toThrow("database or disk is full (test)");
  // Nothing recorded: the row is still `delivering` (the worker retries the commit; a crash queues it again).
  expect(rows(t).map((r) => [r.state, r.attempts])).toEqual([["delivering", 0]]);
  expect(t.db.query("SELECT count(*) AS n FROM delivery_attempts").get()).toEqual({ n: 0 });
  expect(counter(t.db, "delivered:forward")).toBe(0);
  expect(counter(t.db, "deferred:forward")).toBe(0);

  t.db.run("DROP TRIGGER refuse_split");
  const [result] = finishAttempts(t.db, [partialRecord(d, deferredStep)]);
  const [original, split] = rows(t);
  expect(result).toEqual({ recorded: true, spoolReleasable: false, deferredDelivery: split!.id, refusedDelivery: null });
  // The delivered one keeps only the recipient that took it.
  expect(original).toMatchObject({ state: "delivered", attempts: 1, target: '["a@company.com"]' });
  expect(split).toEqual({
    id: split!.id,
    target: '["b@company.com"]',
    state: "deferred",
    attempts: 1,
    created_at: QUEUED_AT,
    next_attempt_at: AT + 60_000,
    last_error: "recipients deferred by the relay: b@company.com: 450 4.2.1 Mailbox busy",
    retry_from: QUEUED_AT,
    retry_attempts: 0,
  });
  // One attempt row, on the delivery that made the SMTP transaction.
  expect(t.db.query("SELECT delivery_id, ok FROM delivery_attempts").all()).toEqual([{ delivery_id: original!.id, ok: 1 }]);
  expect(counter(t.db, "delivered:forward")).toBe(1);
  expect(counter(t.db, "deferred:forward")).toBe(1);
  expect(counter(t.db, "failed:forward")).toBe(0);
});

test("b's delivery is claimed when due, for b alone, with the original's age and backoff origin", () => {
  const t = setup();
  t.db.run("UPDATE deliveries SET attempts = 3, retry_from = ?, retry_attempts = 2", [QUEUED_AT + 1000]);
  const d = claimOne(t);
  finishAttempts(t.db, [partialRecord(d, { state: "deferred", nextAttemptAt: AT + 60_000, reason: null })]);
  expect(claimDue(t.db, AT + 59_999, { forwards: 10, webhooks: 0, webhookTargets: [] }, (c) => c)).toEqual([]);
  const [b] = claimDue(t.db, AT + 60_000, { forwards: 10, webhooks: 0, webhookTargets: [] }, (c) => c);
  expect(b).toMatchObject({ kind: "forward", target: '["b@company.com"]', messageId: d.messageId, rule: d.rule, category: d.category });
  expect(b).toMatchObject({ attempts: 4, retryAttempts: 2, createdAt: QUEUED_AT, ageFrom: QUEUED_AT + 1000 });
});

test("deferred recipients of a delivery past QUEUE_MAX_AGE_HOURS become a failed delivery, counted as failed", () => {
  const t = setup();
  const d = claimOne(t);
  const reason = "gave up after 96 h (QUEUE_MAX_AGE_HOURS): recipients deferred by the relay: b@company.com: 450 4.2.1 Mailbox busy";
  const [result] = finishAttempts(t.db, [partialRecord(d, { state: "failed", nextAttemptAt: AT + 40, reason })]);
  expect(result!.spoolReleasable).toBe(false);
  const [, split] = rows(t);
  expect(split).toMatchObject({ target: '["b@company.com"]', state: "failed", last_error: reason });
  expect(counter(t.db, "failed:forward")).toBe(1);
  expect(counter(t.db, "deferred:forward")).toBe(0);
});

test("once b's delivery is delivered too, the spool file may go", () => {
  const t = setup();
  finishAttempts(t.db, [partialRecord(claimOne(t), { state: "deferred", nextAttemptAt: AT, reason: null })]);
  const b = claimOne(t);
  const [result] = finishAttempts(t.db, [{
    delivery: b, at: AT + 1000, durationMs: 30, target: "127.0.0.1:587 → b@company.com", ok: true, reply: "250 Ok",
    step: { state: "delivered", nextAttemptAt: AT + 1030, reason: null },
  }]);
  expect(result).toEqual({ recorded: true, spoolReleasable: true, deferredDelivery: null, refusedDelivery: null });
  expect(rows(t).map((r) => r.state)).toEqual(["delivered", "delivered"]);
});
