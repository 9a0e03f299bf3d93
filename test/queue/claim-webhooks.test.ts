/**
 * Which due webhook posts a claim reads: the first ones in due order over the URLs that have a
 * free slot, never a URL at its cap, and — with a hanging receiver's backlog of thousands of due
 * posts — without visiting that backlog (each URL's rows are read through the partial index
 * deliveries_webhook_due; the claim used to walk every row of a URL at its cap to reach the
 * others, ~2 ms per claim at 20,000 rows, hundreds of claims a second while forwards flow).
 */
import { afterEach, expect, test } from "bun:test";
import { claimDue, dueCandidates, type ClaimLimits } from "../../src/queue/queue-store.ts";
import { newMessageId } from "../../src/spool/ids.ts";
import { makeEnv, type TestEnv } from "../delivery/helpers.ts";

const envs: TestEnv[] = [];
afterEach(() => {
  for (const t of envs.splice(0)) t.db.close();
});

const AT = 1_700_000_000_000;
const STALLED = "https://stalled.example/hook";
const OTHER = "https://other.example/hook";
const THIRD = "https://third.example/hook";

/** Rows as intake writes them (no spool files: only the queries are under test). */
function seed(t: TestEnv, rows: { kind?: "forward" | "webhook"; target: string; dueAt: number; size?: number; state?: string }[]): void {
  const message = t.db.query(
    `INSERT INTO messages (id, received_at, client_ip, helo, tls, mail_from, recipients, subject, size, rule, category, action, archive, status)
     VALUES (?, ?, '192.0.2.7', 'client.example', 1, 'a@example.org', '["x@company.com"]', 's', ?, 'r', 'c', 'webhook', 0, 'done')`,
  );
  const delivery = t.db.query(
    `INSERT INTO deliveries (message_id, kind, target, rule, category, state, attempts, created_at, next_attempt_at, updated_at)
     VALUES (?, ?, ?, 'r', 'c', ?, 0, ?, ?, ?)`,
  );
  t.db.transaction(() => {
    for (const r of rows) {
      const id = newMessageId();
      message.run(id, AT, r.size ?? 4000);
      delivery.run(id, r.kind ?? "webhook", r.target, r.state ?? "queued", AT, r.dueAt, AT);
    }
  })();
}

function env(): TestEnv {
  const t = makeEnv();
  envs.push(t);
  return t;
}

const limits = (o: Partial<ClaimLimits> = {}): ClaimLimits => ({ forwards: 0, webhooks: 4, webhookTargets: [], ...o });

test("the first due posts over the URLs with a free slot, in due order; a URL at its cap is left out", () => {
  const t = env();
  seed(t, [
    { target: STALLED, dueAt: AT + 1 },
    { target: OTHER, dueAt: AT + 2 },
    { target: THIRD, dueAt: AT + 3 },
    { target: OTHER, dueAt: AT + 4 },
    { target: STALLED, dueAt: AT + 5 },
    { target: THIRD, dueAt: AT + 6 },
    { target: OTHER, dueAt: AT + 7 },
    { target: OTHER, dueAt: AT + 10_000, state: "deferred" },
    { target: THIRD, dueAt: AT + 99_999 },
  ]);
  const pick = (l: ClaimLimits) => dueCandidates(t.db, AT + 10_000, l).map((c) => [c.target, c.nextAttemptAt - AT]);
  // Up to the free slots per state (queued, then deferred); the worker's caps choose among them.
  expect(pick(limits())).toEqual([[STALLED, 1], [OTHER, 2], [THIRD, 3], [OTHER, 4], [OTHER, 10_000]]);
  expect(pick(limits({ webhookTargets: [STALLED] }))).toEqual([[OTHER, 2], [THIRD, 3], [OTHER, 4], [THIRD, 6], [OTHER, 10_000]]);
  // A row not yet due is not read.
  expect(pick(limits({ webhooks: 10, webhookTargets: [STALLED, THIRD] }))).toEqual([[OTHER, 2], [OTHER, 4], [OTHER, 7], [OTHER, 10_000]]);
  expect(pick(limits({ webhookTargets: [STALLED, OTHER, THIRD] }))).toEqual([]);
});

test("large posts: only to URLs that may start one now; small posts of the same URL still go", () => {
  const t = env();
  seed(t, [
    { target: STALLED, dueAt: AT + 1, size: 5_000_000 },
    { target: STALLED, dueAt: AT + 2 },
    { target: OTHER, dueAt: AT + 3, size: 5_000_000 },
  ]);
  const pick = (large: ClaimLimits["large"]) => dueCandidates(t.db, AT + 10, limits({ large })).map((c) => [c.target, c.nextAttemptAt - AT]);
  expect(pick({ bytes: 1_000_000, forwards: true, webhooks: true, webhookTargets: [] })).toEqual([[STALLED, 1], [STALLED, 2], [OTHER, 3]]);
  expect(pick({ bytes: 1_000_000, forwards: true, webhooks: true, webhookTargets: [STALLED] })).toEqual([[STALLED, 2], [OTHER, 3]]);
  expect(pick({ bytes: 1_000_000, forwards: true, webhooks: false, webhookTargets: [] })).toEqual([[STALLED, 2]]);
});

test("a hanging receiver's backlog of 20,000 due posts is not walked: each URL's rows are read through their own index", () => {
  const t = env();
  seed(t, [
    ...Array.from({ length: 20_000 }, (_, i) => ({ target: STALLED, dueAt: AT + i })),
    { target: OTHER, dueAt: AT + 20_001 },
    { kind: "forward" as const, target: '["x@company.com"]', dueAt: AT + 20_002 },
  ]);
  const claimed = claimDue(t.db, AT + 30_000, limits({ forwards: 1, webhookTargets: [STALLED] }), (c) => c);
  expect(claimed.map((c) => [c.kind, c.target])).toEqual([["webhook", OTHER], ["forward", '["x@company.com"]']]);

  // How SQLite reads them: the URLs by a seek each, then a range of one URL's rows. Before
  // (one query over deliveries_kind_due, `target NOT IN` the URLs at their cap), it scanned the
  // kind's whole due range.
  const plan = (sql: string) => t.db.query<{ detail: string }, []>(`EXPLAIN QUERY PLAN ${sql}`).all().map((r) => r.detail);
  const urls = plan(`SELECT (SELECT min(target) FROM deliveries WHERE kind = 'webhook' AND state = 'queued' AND target > 'a')`);
  expect(urls.join("\n")).toMatch(/SEARCH deliveries USING COVERING INDEX deliveries_webhook_due \(state=\? AND target>\?\)/);
  const rows = plan(
    `SELECT d.id FROM deliveries d JOIN messages m ON m.id = d.message_id WHERE d.kind = 'webhook' AND d.state = 'queued'
     AND d.target = 'x' AND d.next_attempt_at <= 5 AND (m.size < 5 OR 1) ORDER BY d.next_attempt_at LIMIT 3`,
  );
  expect(rows[0]).toMatch(/SEARCH d USING INDEX deliveries_webhook_due \(state=\? AND target=\? AND next_attempt_at<\?\)/);
  expect(rows.join("\n")).not.toMatch(/TEMP B-TREE|SCAN d/);
});
