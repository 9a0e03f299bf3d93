/**
 * The relay suspension's backoff and its SQL (src/queue/relay-suspension.ts), on a real SQLite
 * file: forwards due while the relay is suspended wait for its end without an attempt, those past
 * QUEUE_MAX_AGE_HOURS fail, and the relay's return makes only the forwards it deferred due again.
 * The behaviour of `mailgw serve` is tested end to end in test/e2e/serve-relay-suspension.test.ts.
 */
import { afterEach, expect, test } from "bun:test";
import { deferDueForwards, readSuspension, liftSuspension, resumeForwards, suspensionDelayMs, type RelaySuspension } from "../../src/queue/relay-suspension.ts";
import { counter, makeEnv, seedDelivery, type TestEnv } from "../delivery/helpers.ts";

const envs: TestEnv[] = [];
afterEach(() => {
  for (const t of envs.splice(0)) t.db.close();
});

test("the suspension doubles from QUEUE_RETRY_BASE_SECONDS per failed probe, capped at one hour", () => {
  const seconds = (base: number) => Array.from({ length: 9 }, (_, i) => suspensionDelayMs(i + 1, base) / 1000);
  expect(seconds(60)).toEqual([60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
  expect(seconds(1)).toEqual([1, 2, 4, 8, 16, 32, 64, 128, 256]);
  expect(suspensionDelayMs(1000, 60)).toBe(3_600_000);
  expect(suspensionDelayMs(1, 0.05)).toBe(50);
});

function row(t: TestEnv, id: string) {
  return t.db
    .query<{ state: string; attempts: number; next_attempt_at: number; last_error: string | null }, [string]>(
      "SELECT state, attempts, next_attempt_at, last_error FROM deliveries WHERE message_id = ?",
    )
    .get(id);
}

test("due forwards wait for the suspension's end without an attempt; too old ones fail; the relay's return makes them due", () => {
  const t = makeEnv({ QUEUE_MAX_AGE_HOURS: "1" });
  envs.push(t);
  const now = Date.now();
  const s: RelaySuspension = { relay: "127.0.0.1:2525", since: now - 1000, until: now + 60_000, reason: "EAUTH: Invalid login: 535 bad credentials", failures: 1 };
  const young = seedDelivery(t, { createdAt: now - 60_000 });
  const old = seedDelivery(t, { createdAt: now - 2 * 3600_000, rule: "old-rule" });
  const later = seedDelivery(t, { createdAt: now - 60_000 });
  t.db.query("UPDATE deliveries SET next_attempt_at = ?, state = 'deferred', last_error = '451 try later' WHERE message_id = ?").run(now + 30_000, later);
  const hook = seedDelivery(t, { kind: "webhook", createdAt: now - 60_000 });

  const failed = deferDueForwards(t.db, s, now, t.config.queue.maxAgeHours);
  expect(failed.map((f) => f.messageId)).toEqual([old]);
  expect(row(t, young)).toEqual({ state: "deferred", attempts: 0, next_attempt_at: s.until, last_error: `relay suspended: ${s.reason}` });
  expect(row(t, old)).toMatchObject({ state: "failed", attempts: 0, last_error: `gave up after 1 h (QUEUE_MAX_AGE_HOURS): relay suspended: ${s.reason}` });
  expect(counter(t.db, "failed:forward")).toBe(1);
  expect(row(t, later)).toMatchObject({ state: "deferred", next_attempt_at: now + 30_000, last_error: "451 try later" });
  expect(row(t, hook)).toMatchObject({ state: "queued", last_error: null });
  // Nothing due any more: no write at all.
  expect(deferDueForwards(t.db, s, now + 1, t.config.queue.maxAgeHours)).toEqual([]);

  // The relay is back: what the suspension deferred is due now, a forward deferred for its own 451 keeps its time.
  expect(resumeForwards(t.db, now + 5000)).toBe(1);
  expect(row(t, young)).toMatchObject({ state: "deferred", next_attempt_at: now + 5000 });
  expect(row(t, later)).toMatchObject({ next_attempt_at: now + 30_000 });
});

test("the suspension on record is read, and lifted once", () => {
  const t = makeEnv();
  envs.push(t);
  expect(readSuspension(t.db)).toBeNull();
  const s: RelaySuspension = { relay: "smtp.example:587", since: 1, until: 2, reason: "ECONNREFUSED", failures: 3 };
  t.db.query("INSERT INTO meta (key, value) VALUES ('relay_suspension', ?)").run(JSON.stringify(s));
  expect(readSuspension(t.db)).toEqual(s);
  expect(liftSuspension(t.db)).toEqual(s);
  expect(liftSuspension(t.db)).toBeNull();
  t.db.query("INSERT INTO meta (key, value) VALUES ('relay_suspension', 'not json')").run();
  expect(readSuspension(t.db)).toBeNull();
});
