/**
 * A forward's delivery must not be claimable before its message is durable: the intake
 * commits rows before the writer thread has written the spool files, so a delivery worker
 * claiming at that moment would find no file ("spool file missing" → failed, seen in a
 * benchmark). Watches the deliveries table from a second connection while messages are
 * received: every delivery that is due has its spool file; all are due once 250 was answered.
 */
import { Database } from "bun:sqlite";
import { afterEach, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { releaseHeld, retryNow } from "../../src/queue/queue-store.ts";
import { insertDelivery, insertMessage, NOT_YET_DURABLE_AT, releaseDeliveries } from "../../src/store/messages.ts";
import { envelope, makeHarness, message, type Harness } from "./helpers.ts";

let h: Harness | null = null;
afterEach(async () => {
  await h?.close();
  h = null;
}, 60_000);

test("deliveries are held back until their message is durable, then due at once", async () => {
  h = await makeHarness();
  const watcher = new Database(h.config.databasePath, { readonly: true });
  const spool = join(h.config.dataDir, "spool");
  let heldSeen = 0;
  let dueWithoutFile = 0;
  let watching = true;
  const watch = (): void => {
    if (!watching) return;
    const rows = watcher.query<{ message_id: string; next_attempt_at: number }, []>("SELECT message_id, next_attempt_at FROM deliveries").all();
    for (const r of rows) {
      if (r.next_attempt_at === NOT_YET_DURABLE_AT) heldSeen++;
      else if (!existsSync(join(spool, `${r.message_id}.eml`))) dueWithoutFile++;
    }
    setImmediate(watch);
  };
  watch();
  // The window (rows committed, sync not done) lasts about a syncfs: on a loaded machine the
  // watcher can miss it in one batch of 40, so up to 5 batches are sent until it was seen.
  const outs: Awaited<ReturnType<Harness["pipeline"]["receive"]>>[] = [];
  for (let round = 0; round < 5 && heldSeen === 0; round++) {
    outs.push(...(await Promise.all(Array.from({ length: 40 }, (_, i) => h!.pipeline.receive(message(`quote ${round}-${i}`), envelope())))));
  }
  watching = false;
  expect(outs.every((o) => o.decision.action === "forward")).toBe(true);
  expect(dueWithoutFile).toBe(0);
  expect(heldSeen).toBeGreaterThan(0); // the window was observed, not skipped
  const due = watcher.query<{ n: number }, [number]>("SELECT count(*) AS n FROM deliveries WHERE next_attempt_at = created_at AND next_attempt_at <> ?").get(NOT_YET_DURABLE_AT);
  expect(due?.n).toBe(outs.length);
  watcher.close();
});

test("a delivery is created at its commit, not at DATA start: the minute-old sweep cannot release a slow message's before its syncfs", async () => {
  const start = Date.now();
  let clock = start;
  h = await makeHarness({ now: () => clock });
  const received = h.pipeline.receive(message("quote slow"), envelope());
  clock = start + 61_000; // the DATA phase of this message took over a minute
  const out = await received;
  const row = h.db.query<{ created_at: number; received_at: number }, [string]>(
    "SELECT d.created_at, m.received_at FROM deliveries d JOIN messages m ON m.id = d.message_id WHERE d.message_id = ?",
  ).get(out.id ?? "");
  expect(row).toEqual({ created_at: start + 61_000, received_at: start });
});

test("`queue retry --all` leaves a held-back delivery alone; its release makes it due", async () => {
  h = await makeHarness({ recover: false });
  const t = Date.now();
  const id = "01m81zh58fmmh9a1q2rb3b1kab";
  insertMessage(h.db, {
    id, receivedAt: t, clientIp: "192.0.2.1", helo: "x", tls: false, mailFrom: "a@b.org", recipients: ["x@example.com"],
    subject: "s", size: 10, rule: null, category: "default", action: "forward", archive: false, status: "done",
  });
  insertDelivery(h.db, { messageId: id, kind: "forward", target: ["x@y.org"], rule: null, category: "default", state: "held", createdAt: t }, NOT_YET_DURABLE_AT);
  const next = () => h!.db.query<{ state: string; next_attempt_at: number }, []>("SELECT state, next_attempt_at FROM deliveries").get();
  expect(retryNow(h.db, null, t + 5)).toBe(0);
  expect(next()).toEqual({ state: "held", next_attempt_at: NOT_YET_DURABLE_AT });
  releaseDeliveries(h.db, [id]);
  expect(next()).toEqual({ state: "held", next_attempt_at: t });
  expect(retryNow(h.db, null, t + 5)).toBe(1);
});

test("a relay set by SIGHUP queues a held-back forward but leaves it held back until its release", async () => {
  h = await makeHarness({ recover: false });
  const t = Date.now();
  const ids = ["01m81zh58fmmh9a1q2rb3b1kac", "01m81zh58fmmh9a1q2rb3b1kad"];
  for (const id of ids) {
    insertMessage(h.db, {
      id, receivedAt: t, clientIp: "192.0.2.1", helo: "x", tls: false, mailFrom: "a@b.org", recipients: ["x@example.com"],
      subject: "s", size: 10, rule: null, category: "default", action: "forward", archive: false, status: "done",
    });
  }
  // The first is durable (released) and held; the second's message is still being written.
  insertDelivery(h.db, { messageId: ids[0]!, kind: "forward", target: ["x@y.org"], rule: null, category: "default", state: "held", createdAt: t });
  insertDelivery(h.db, { messageId: ids[1]!, kind: "forward", target: ["x@y.org"], rule: null, category: "default", state: "held", createdAt: t }, NOT_YET_DURABLE_AT);
  const rows = () => h!.db.query<{ state: string; next_attempt_at: number }, []>("SELECT state, next_attempt_at FROM deliveries ORDER BY id").all();
  expect(releaseHeld(h.db, t + 5)).toBe(2);
  expect(rows()).toEqual([{ state: "queued", next_attempt_at: t + 5 }, { state: "queued", next_attempt_at: NOT_YET_DURABLE_AT }]);
  releaseDeliveries(h.db, [ids[1]!]);
  expect(rows()[1]).toEqual({ state: "queued", next_attempt_at: t });
});

test("the minute sweep never finishes a message whose commit is under way, however long its DATA phase took", async () => {
  const start = Date.now();
  let clock = start;
  h = await makeHarness({ now: () => clock });
  const pipeline = h.pipeline;
  // A sweep counts when it started with committed rows not yet finished: the ones it must skip.
  const unfinished = h.db.query<{ n: number }, []>("SELECT count(*) AS n FROM messages WHERE status = 'spooled'");
  let sweepsFacingUnfinished = 0;
  let swept = 0;
  const outs: Awaited<ReturnType<typeof pipeline.receiveOwned>>[] = [];
  // The race lasts about a commit group's sync: on a loaded machine one batch can miss it, so up
  // to 5 batches are sent until a sweep met it.
  for (let round = 0; round < 5 && sweepsFacingUnfinished === 0; round++) {
    clock = start;
    // 30 messages whose DATA began at `start` (forward + archive copy: post-250 work)…
    const files = await Promise.all(Array.from({ length: 30 }, () => pipeline.openIncoming()));
    files.forEach((f, i) => f.write(message(`keepcopy ${round}-${i}`)));
    clock = start + 61_000; // …and ended over a minute later, so their rows look a minute old.
    let sweeping = true;
    const sweepLoop = async (): Promise<void> => {
      while (sweeping) {
        if ((unfinished.get()?.n ?? 0) > 0) sweepsFacingUnfinished++;
        swept += await pipeline.sweep();
        await new Promise((r) => setImmediate(r));
      }
    };
    const loop = sweepLoop();
    outs.push(...(await Promise.all(files.map((f) => pipeline.receiveOwned(f, envelope())))));
    sweeping = false;
    await loop;
    await pipeline.settle();
  }
  expect(outs.every((o) => o.decision.action === "forward" && o.decision.archive)).toBe(true);
  expect(sweepsFacingUnfinished).toBeGreaterThan(0); // the race was there to lose
  expect(swept).toBe(0);
  const rows = h.db.query<{ status: string; archive_path: string | null }, []>("SELECT status, archive_path FROM messages").all();
  expect(rows).toHaveLength(outs.length);
  expect(rows.every((r) => r.status === "done" && r.archive_path !== null)).toBe(true);
  // Once nothing is in flight, a real straggler is still the sweep's: a row left spooled.
  h.db.exec("UPDATE messages SET status = 'spooled' WHERE rowid = (SELECT min(rowid) FROM messages)");
  expect(await pipeline.sweep()).toBe(1);
});
