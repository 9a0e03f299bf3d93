/**
 * mailgw_delivery_duration_seconds is a counter-like histogram: Prometheus reads any decrease
 * of its buckets, _sum or _count as a reset and adds the whole new value to increase() and
 * rate(). Attempts recorded by the delivery worker must therefore stay counted after their rows
 * are deleted (`mailgw queue drop`, archive retention) — also by a new server on the same
 * database, as after a restart of serve.
 */
import { afterEach, expect, test } from "bun:test";
import { claimDue, dropDeliveries, finishAttempts, type AttemptRecord, type ClaimedDelivery } from "../../src/queue/queue-store.ts";
import { deleteMessages } from "../../src/store/messages.ts";
import { makeEnv, seedDelivery, type TestEnv } from "../delivery/helpers.ts";
import { find, parseExposition } from "../helpers/exposition.ts";
import { get, makeStatus, startServer } from "./fixture.ts";

const envs: TestEnv[] = [];
afterEach(() => {
  for (const t of envs.splice(0)) t.db.close();
});

function failedAttempt(d: ClaimedDelivery, durationMs: number): AttemptRecord {
  const at = Date.now();
  return {
    delivery: d, at, durationMs, target: "relay", ok: false, reply: "550 5.1.1 no such user",
    step: { state: "failed", nextAttemptAt: at + durationMs, reason: null },
  };
}

async function histogram(t: TestEnv): Promise<{ count?: number; le1?: number; le0_1?: number; sum?: number }> {
  const server = await startServer({ dir: t.dir, dataDir: t.dataDir, db: t.db, status: makeStatus(), cleanup: () => {} });
  try {
    const { samples } = parseExposition(await (await get(server, "/metrics")).text());
    return {
      count: find(samples, "mailgw_delivery_duration_seconds_count", { kind: "forward" }),
      le0_1: find(samples, "mailgw_delivery_duration_seconds_bucket", { kind: "forward", le: "0.1" }),
      le1: find(samples, "mailgw_delivery_duration_seconds_bucket", { kind: "forward", le: "1" }),
      sum: find(samples, "mailgw_delivery_duration_seconds_sum", { kind: "forward" }),
    };
  } finally {
    await server.stop();
  }
}

test("attempts stay in the duration histogram after queue drop and retention deleted their rows, also for a new server", async () => {
  const t = makeEnv();
  envs.push(t);
  seedDelivery(t); // stays
  const dropped = seedDelivery(t);
  const expired = seedDelivery(t);
  const claimed = claimDue(t.db, Date.now(), { forwards: 10, webhooks: 0, webhookTargets: [] }, (c) => c);
  expect(claimed.length).toBe(3);
  finishAttempts(t.db, claimed.map((d, i) => failedAttempt(d, [80, 700, 300][i] ?? 0)));
  const before = await histogram(t);
  expect(before).toEqual({ count: 3, le0_1: 1, le1: 3, sum: 1.08 });

  const byMessage = new Map(claimed.map((d) => [d.messageId, d]));
  dropDeliveries(t.db, [byMessage.get(dropped)?.id ?? -1]); // `mailgw queue drop`
  t.db.transaction(() => deleteMessages(t.db, [expired]))(); // archive retention
  expect(t.db.query("SELECT count(*) AS n FROM delivery_attempts").get()).toEqual({ n: 1 });

  // A fresh server on the same database, as after `systemctl restart mailgw`.
  expect(await histogram(t)).toEqual(before);
});
