/**
 * The batched counts of sessions that handed over no message, and of the gateway's refusals:
 * every flush writes what was counted since the one before, once (a flush that did not
 * subtract what it wrote would write it again at every later flush, every 2 s).
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../../src/log/logger.ts";
import { createSessionCounters, FLUSH_INTERVAL_MS } from "../../src/serve/session-counters.ts";
import { addSessionCounts, emptySessionCounts, type SessionCounts } from "../../src/store/counters.ts";
import { openDatabase } from "../../src/store/db.ts";

let db: Database | null = null;
afterEach(() => {
  db?.close();
  db = null;
});

const logger = createLogger({ level: "error", format: "json", write: () => undefined });

function openDb(): Database {
  db = openDatabase(join(mkdtempSync(join(tmpdir(), "mailgw-session-counters-")), "m.db"));
  return db;
}

function counters(d: Database): Record<string, number> {
  const rows = d.query<{ metric: string; n: number }, []>("SELECT metric, sum(n) AS n FROM daily_counters GROUP BY metric").all();
  return Object.fromEntries(rows.map((r) => [r.metric, r.n]));
}

describe("session counters", () => {
  test("each flush writes only what was counted since the last one", () => {
    const d = openDb();
    const c = createSessionCounters(d, logger);
    c.count(false);
    c.count(true);
    c.count(false);
    c.refused("relay_denied");
    c.stop();
    expect(counters(d)).toEqual({ session: 3, session_tls: 1, "refused:relay_denied": 1 });
    c.stop(); // nothing new: nothing written
    expect(counters(d)).toEqual({ session: 3, session_tls: 1, "refused:relay_denied": 1 });
    c.count(true);
    c.refused("relay_denied");
    c.refused("rate_limited");
    c.stop();
    expect(counters(d)).toEqual({ session: 4, session_tls: 2, "refused:relay_denied": 2, "refused:rate_limited": 1 });
  });

  test("handed to the delivery thread at each interval: each count handed over once", async () => {
    const d = openDb();
    const handed: SessionCounts[] = [];
    const c = createSessionCounters(d, logger, Date.now, (_at, counts) => (handed.push(counts), true));
    c.start();
    c.count(true);
    c.refused("too_big");
    await Bun.sleep(FLUSH_INTERVAL_MS + 300);
    c.count(false);
    await Bun.sleep(FLUSH_INTERVAL_MS);
    c.stop();
    const total = emptySessionCounts();
    for (const h of handed) addSessionCounts(total, h);
    expect(total).toEqual({ sessions: 2, tls: 1, refused: { too_big: 1 } });
    expect(counters(d)).toEqual({}); // all went to the thread, none written here
  }, 10_000);

  test("addSessionCounts: −1 takes back exactly what was added; reasons at zero disappear", () => {
    const into = emptySessionCounts();
    const c = { sessions: 3, tls: 2, refused: { relay_denied: 2 } };
    addSessionCounts(into, c);
    addSessionCounts(into, { sessions: 1, tls: 0, refused: { relay_denied: 1, too_big: 1 } });
    addSessionCounts(into, c, -1);
    expect(into).toEqual({ sessions: 1, tls: 0, refused: { relay_denied: 1, too_big: 1 } });
  });
});
