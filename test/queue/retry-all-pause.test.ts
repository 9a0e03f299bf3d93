/**
 * `mailgw queue retry --all` ends a webhook receiver's Retry-After wait (README: "mailgw queue
 * retry ends the wait at once") even when no delivery was retryable: the posts it holds show
 * `queued`, NEXT TRY now, and once the post that got the 429 was dropped (or is being posted
 * again), `retry --all` said "0 deliveries queued" and they waited for the rest of the pause.
 */
import { expect, test } from "bun:test";
import { formatRetry, retry } from "../../src/queue/queue-admin.ts";
import { createWebhookPauses } from "../../src/queue/webhook-pauses.ts";
import { makeEnv, seedDelivery } from "../delivery/helpers.ts";

const URL = "http://127.0.0.1:1/hook";

test("retry --all with only queued posts behind a Retry-After pause lifts the pause", () => {
  const t = makeEnv();
  seedDelivery(t, { kind: "webhook", target: URL, state: "queued" });
  const now = Date.now();
  const pauses = createWebhookPauses(t.db, 0); // the worker's, read at every claim here
  pauses.pause(URL, 600_000, now); // the receiver's 429 with Retry-After: 600
  expect(pauses.paused(now + 1).has(URL)).toBe(true);
  expect(retry(t.db, null, now + 2).retried).toBe(0); // nothing failed, deferred or held
  expect(pauses.paused(now + 3).has(URL)).toBe(false);
}, 30_000);

test("retry ID of a queued post behind a Retry-After pause ends the pause, as retry --all does (not 'is queued: only failed, ... can be retried')", () => {
  const t = makeEnv();
  const id = seedDelivery(t, { kind: "webhook", target: URL, state: "queued" });
  const now = Date.now();
  const pauses = createWebhookPauses(t.db, 0);
  pauses.pause(URL, 600_000, now);
  const result = retry(t.db, id, now + 2);
  expect(result).toMatchObject({ retried: 0, waitEnded: 1 });
  expect(formatRetry(result)).toContain("Retry-After waits are ended");
  expect(pauses.paused(now + 3).has(URL)).toBe(false);
  // A queued forward is still refused: nothing holds it that a retry could end.
  const fwd = seedDelivery(t, { kind: "forward", state: "queued" });
  expect(() => retry(t.db, fwd, now + 4)).toThrow(/is queued: only/);
}, 30_000);
