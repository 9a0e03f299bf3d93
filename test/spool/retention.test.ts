/**
 * ARCHIVE_MAX_AGE_DAYS: old archive copies go with their rows (message, deliveries, attempts),
 * except a row a delivery still needs (its path is cleared); newer ones stay.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { newMessageId } from "../../src/spool/ids.ts";
import { dayKey } from "../../src/store/db.ts";
import { insertDelivery, insertMessage, markMessageDone } from "../../src/store/messages.ts";
import { pruneArchive } from "../../src/store/retention.ts";
import { envelope, listFiles, makeHarness, message, type Harness } from "../pipeline/helpers.ts";

const DAY = 86_400_000;
let h: Harness | null = null;
afterEach(async () => {
  await h?.close();
  h = null;
}, 60_000);

async function archivedAt(hh: Harness, receivedAt: number): Promise<string> {
  const id = newMessageId(receivedAt);
  const rel = `archive/${dayKey(receivedAt)}/${id}.eml`;
  await mkdir(join(hh.config.dataDir, "archive", dayKey(receivedAt)), { recursive: true });
  await writeFile(join(hh.config.dataDir, rel), "old mail");
  insertMessage(hh.db, {
    id, receivedAt, clientIp: "192.0.2.1", helo: "x", tls: false, mailFrom: "", recipients: [], subject: "", size: 8,
    rule: null, category: "default", action: "archive", archive: true, status: "spooled",
  });
  markMessageDone(hh.db, id, rel);
  return id;
}

describe("archive retention", () => {
  test("deletes copies older than the limit and the rows no delivery needs; keeps newer copies and a failed delivery's row", async () => {
    // No ARCHIVE_MAX_AGE_DAYS here: the background pass that recover() would start races the
    // explicit pruneArchive below and splits the counts between the two.
    h = await makeHarness();
    const now = Date.now();
    const old1 = await archivedAt(h, now - 30 * DAY);
    const old2 = await archivedAt(h, now - 8 * DAY);
    const recent = await archivedAt(h, now - 6 * DAY);
    // A stray file in an old day directory without any row goes with its directory.
    await writeFile(join(h.config.dataDir, "archive", dayKey(now - 30 * DAY), "stray.eml.tmp"), "x");
    const fresh = await h.pipeline.receive(message("today"), envelope());
    await h.pipeline.settle();

    // old2 was also forwarded, and that delivery failed: `queue retry` still needs its row.
    insertDelivery(h.db, { messageId: old2, kind: "forward", target: ["x@y.org"], rule: null, category: "default", state: "failed", createdAt: now - 8 * DAY });
    // old3 was forwarded and delivered: its delivery and attempt go with it.
    const old3 = await archivedAt(h, now - 9 * DAY);
    insertDelivery(h.db, { messageId: old3, kind: "forward", target: ["x@y.org"], rule: null, category: "default", state: "delivered", createdAt: now - 9 * DAY });
    h.db.query("INSERT INTO delivery_attempts (delivery_id, at, target, duration_ms, ok, reply) SELECT id, created_at, 'relay', 5, 1, '250 ok' FROM deliveries WHERE message_id = ?").run(old3);

    const report = await pruneArchive(h.db, h.config.dataDir, 7, now);
    expect(report.rowsCleared).toBe(3);
    expect(report.filesDeleted).toBe(3);
    expect(report.rowsDeleted).toBe(2);
    const files = await listFiles(join(h.config.dataDir, "archive"));
    expect(files).toEqual([`${dayKey(now - 6 * DAY)}/${recent}.eml`, `${dayKey(now)}/${fresh.id}.eml`].sort());
    const rows = h.db.query<{ id: string; archive_path: string | null }, []>("SELECT id, archive_path FROM messages ORDER BY id").all();
    expect(rows.map((r) => r.id).sort()).toEqual([old2, recent, fresh.id].sort());
    expect(rows.find((r) => r.id === old2)?.archive_path).toBeNull();
    expect(rows.find((r) => r.id === old1)).toBeUndefined();
    const left = (sql: string): number => h!.db.query<{ n: number }, []>(sql).get()?.n ?? -1;
    expect(left("SELECT count(*) AS n FROM deliveries")).toBe(1); // old2's failed one
    expect(left("SELECT count(*) AS n FROM delivery_attempts")).toBe(0);
  });

  test("the limit is exact: a copy an hour inside it stays (its day directory too), one an hour past it goes", async () => {
    h = await makeHarness();
    const now = Date.UTC(2026, 5, 15, 12, 0, 0); // cutoff at 7 days: 2026-06-08 12:00 UTC
    const HOUR = 3_600_000;
    const cutoff = now - 7 * DAY;
    const inside = await archivedAt(h, now - 6.5 * DAY);
    const justInside = await archivedAt(h, cutoff + HOUR);
    const justPast = await archivedAt(h, cutoff - HOUR); // the same day as justInside
    const past = await archivedAt(h, now - 8 * DAY);
    const report = await pruneArchive(h.db, h.config.dataDir, 7, now);
    expect(report).toMatchObject({ filesDeleted: 2, rowsCleared: 2, rowsDeleted: 2, dayDirsRemoved: 1 });
    expect(await listFiles(join(h.config.dataDir, "archive"))).toEqual([`2026-06-08/${justInside}.eml`, `2026-06-09/${inside}.eml`]);
    const ids = h.db.query<{ id: string }, []>("SELECT id FROM messages ORDER BY received_at").all().map((r) => r.id);
    expect(ids).toEqual([justInside, inside]);
    expect([justPast, past].some((id) => ids.includes(id))).toBe(false);
  });

  test("with ARCHIVE_MAX_AGE_DAYS set, the pass started by recover() prunes in the background", async () => {
    h = await makeHarness({ env: { ARCHIVE_MAX_AGE_DAYS: "7" }, recover: false });
    const now = Date.now();
    const old = await archivedAt(h, now - 10 * DAY);
    const recent = await archivedAt(h, now - 1 * DAY);
    await h.pipeline.recover();
    const archive = join(h.config.dataDir, "archive");
    const oldPath = () => h!.db.query<{ archive_path: string | null }, [string]>("SELECT archive_path FROM messages WHERE id = ?").get(old);
    // The pass deletes the file, then clears the row: wait for both before asserting.
    const deadline = Date.now() + 5000;
    while (((await listFiles(archive)).length > 1 || oldPath()?.archive_path) && Date.now() < deadline) await Bun.sleep(20);
    expect(await listFiles(archive)).toEqual([`${dayKey(now - 1 * DAY)}/${recent}.eml`]);
    while (oldPath() !== null && Date.now() < deadline) await Bun.sleep(20);
    expect(oldPath()).toBeNull(); // the row went too
  });

  test("a first pass behind many kept rows seeks where the last page ended, not from the oldest row each page", async () => {
    // Forwards whose delivery failed (kept for `queue retry`), then archived messages: several
    // pages. Each page started again from the oldest row and walked over every kept one: on a
    // year's database (400,000 kept rows) 65-130 ms per page on the event loop, 100 s per pass
    // (bench/year-of-data.ts). The page queries' lower bounds show the seek, whatever the speed.
    h = await makeHarness();
    const now = Date.now();
    h.db.run(
      `WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 3000)
       INSERT INTO messages (id, received_at, client_ip, helo, tls, mail_from, recipients, subject, size, rule, category, action, archive, status)
         SELECT printf('k%025d', i), ? + i * 50, '192.0.2.1', 'mx.sender.example', 1, 'a@sender.example', '["x@y.org"]', 'kept', 10,
                NULL, 'default', 'forward', 0, 'done' FROM k`,
      [now - 300 * DAY],
    );
    h.db.run(
      `INSERT INTO deliveries (message_id, kind, target, rule, category, state, attempts, created_at, next_attempt_at, updated_at)
         SELECT id, 'forward', '["x@y.org"]', NULL, 'default', 'failed', 5, received_at, received_at, received_at FROM messages`,
    );
    h.db.run(
      `WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 2000)
       INSERT INTO messages (id, received_at, client_ip, helo, tls, mail_from, recipients, subject, size, rule, category, action, archive, status, archive_path)
         SELECT printf('a%025d', i), ? + i * 50, '192.0.2.1', 'mx.sender.example', 1, 'a@sender.example', '[]', 'old', 10,
                NULL, 'default', 'archive', 1, 'done', printf('archive/%s/a%025d.eml', ?, i) FROM k`,
      [now - 60 * DAY, dayKey(now - 60 * DAY)],
    );
    // The lower bound of every page query, as bound (SQLite's own trace is not exposed).
    const bounds: number[] = [];
    const db = h.db;
    const spied = new Proxy(db, {
      get(target, prop) {
        if (prop !== "query") {
          const value: unknown = Reflect.get(target, prop, target);
          return typeof value === "function" ? value.bind(target) : value;
        }
        return (sql: string) => {
          const statement = db.query(sql);
          if (!/received_at >= \?/.test(sql)) return statement;
          return new Proxy(statement, {
            get(st, name) {
              if (name !== "all") {
                const value: unknown = Reflect.get(st, name, st);
                return typeof value === "function" ? value.bind(st) : value;
              }
              return (...args: unknown[]) => {
                bounds.push(args[0] as number);
                return (st.all as (...a: unknown[]) => unknown)(...args);
              };
            },
          });
        };
      },
    });
    const report = await pruneArchive(spied, h.config.dataDir, 7, now);
    expect(report).toMatchObject({ rowsCleared: 2000, rowsDeleted: 2000 });
    expect(h.db.query<{ n: number }, []>("SELECT count(*) AS n FROM messages").get()?.n).toBe(3000);
    // 4 pages of archived rows (+ the empty one), then 4 pages of deletions (+ the empty one):
    // after each pass's first page, the bound is where the last page ended, past every kept row.
    expect(bounds.length).toBeGreaterThanOrEqual(10);
    const pastKept = bounds.filter((b) => b >= now - 60 * DAY);
    expect(pastKept.length).toBe(bounds.length - 2);
  });

  test("directories under archive/ whose names are no day (not even 2025-02-30) are left alone, old day directories go", async () => {
    h = await makeHarness();
    const now = Date.now();
    const root = join(h.config.dataDir, "archive");
    const kept = ["notes/readme.txt", "2025-02-30/kept.eml", "2025-04-31/kept.eml", "2025-13-01/kept.eml", "0000-00-00/kept.eml"];
    for (const f of kept) {
      await mkdir(join(root, f, ".."), { recursive: true });
      await writeFile(join(root, f), "not mailgw's");
    }
    await mkdir(join(root, dayKey(now - 40 * DAY)), { recursive: true }); // an empty old day: removed
    const report = await pruneArchive(h.db, h.config.dataDir, 7, now);
    expect(report.dayDirsRemoved).toBe(1);
    expect(await listFiles(root)).toEqual([...kept].sort());
  });

  test("ARCHIVE_MAX_AGE_DAYS=0 keeps everything", async () => {
    h = await makeHarness();
    const now = Date.now();
    await archivedAt(h, now - 400 * DAY);
    expect(await pruneArchive(h.db, h.config.dataDir, 0, now)).toEqual({ filesDeleted: 0, rowsCleared: 0, rowsDeleted: 0, dayDirsRemoved: 0, stopped: false });
    expect((await listFiles(join(h.config.dataDir, "archive"))).length).toBe(1);
  });
});
