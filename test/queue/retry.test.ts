/** The pure retry schedule: doubling, jitter bounds, 1 h cap, max age, permanent failures. */
import { describe, expect, test } from "bun:test";
import { nextStep, RETRY_CAP_MS, retryDelayMs } from "../../src/queue/retry.ts";

const mid = () => 0.5; // no jitter
const HOUR = 3600_000;

describe("retryDelayMs", () => {
  test("doubles from the base per attempt", () => {
    expect([1, 2, 3, 4, 5].map((n) => retryDelayMs(n, 60, mid))).toEqual([60_000, 120_000, 240_000, 480_000, 960_000]);
  });
  test("jitter stays within ±20%", () => {
    expect(retryDelayMs(1, 60, () => 0)).toBe(48_000);
    expect(retryDelayMs(1, 60, () => 0.999999)).toBeCloseTo(72_000, -1);
    for (let i = 0; i < 1000; i++) {
      const d = retryDelayMs(3, 10, Math.random);
      expect(d).toBeGreaterThanOrEqual(32_000);
      expect(d).toBeLessThanOrEqual(48_000);
    }
  });
  test("capped at one hour, jitter included, even for huge attempt counts", () => {
    expect(retryDelayMs(7, 60, mid)).toBe(RETRY_CAP_MS);
    expect(retryDelayMs(1000, 60, () => 0.99)).toBeLessThanOrEqual(RETRY_CAP_MS);
    expect(retryDelayMs(7, 60, () => 0)).toBe(0.8 * RETRY_CAP_MS);
  });
  test("at the cap the jitter still spreads the retries (below the hour), not half of them on the hour exactly", () => {
    for (const attempts of [7, 8, 30]) {
      const delays = Array.from({ length: 2000 }, () => retryDelayMs(attempts, 60, Math.random));
      for (const d of delays) expect(d).toBeWithin(0.8 * RETRY_CAP_MS, RETRY_CAP_MS + 1);
      // Deliveries deferred in one burst: few share a second an hour later.
      expect(delays.filter((d) => d === RETRY_CAP_MS).length).toBeLessThan(20);
      expect(new Set(delays.map((d) => Math.floor(d / 1000))).size).toBeGreaterThan(400);
    }
  });
  test("tiny bases (tests) still give a positive delay", () => {
    expect(retryDelayMs(1, 0.001, () => 0)).toBeGreaterThan(0);
  });
});

describe("nextStep", () => {
  const base = { attempts: 1, createdAt: 0, now: 1000, maxAgeHours: 96, retryBaseSeconds: 60, random: mid };
  test("delivered", () => {
    expect(nextStep({ ...base, outcome: { kind: "delivered", reply: "250 ok" } }).state).toBe("delivered");
  });
  test("permanent → failed with the error as reason", () => {
    const s = nextStep({ ...base, outcome: { kind: "permanent", error: "550 no such user" } });
    expect(s).toEqual({ state: "failed", nextAttemptAt: 1000, reason: "550 no such user" });
  });
  test("temporary → deferred by the schedule", () => {
    const s = nextStep({ ...base, attempts: 2, outcome: { kind: "temporary", error: "451" } });
    expect(s.state).toBe("deferred");
    expect(s.nextAttemptAt).toBe(1000 + 120_000);
  });
  test("temporary past QUEUE_MAX_AGE_HOURS → failed", () => {
    const s = nextStep({ ...base, now: 97 * HOUR, outcome: { kind: "temporary", error: "451 busy" } });
    expect(s.state).toBe("failed");
    expect(s.reason).toContain("QUEUE_MAX_AGE_HOURS");
    expect(s.reason).toContain("451 busy");
  });
  test("a retryAfterMs longer than the backoff sets the delay, capped at an hour; a shorter one changes nothing", () => {
    const after = (retryAfterMs: number) => nextStep({ ...base, outcome: { kind: "temporary", error: "429", retryAfterMs } }).nextAttemptAt;
    expect(after(300_000)).toBe(1000 + 300_000);
    expect(after(86_400_000)).toBe(1000 + RETRY_CAP_MS);
    expect(after(5_000)).toBe(1000 + 60_000);
    // Never past the age limit: the final try stays at the expiry moment.
    const last = nextStep({ ...base, now: 96 * HOUR - 1000, outcome: { kind: "temporary", error: "429", retryAfterMs: 600_000 } });
    expect(last.nextAttemptAt).toBe(96 * HOUR);
  });
  test("the last retry is pulled in to the expiry moment", () => {
    const s = nextStep({ ...base, now: 96 * HOUR - 1000, attempts: 20, outcome: { kind: "temporary", error: "x" } });
    expect(s.state).toBe("deferred");
    expect(s.nextAttemptAt).toBe(96 * HOUR);
  });
});
