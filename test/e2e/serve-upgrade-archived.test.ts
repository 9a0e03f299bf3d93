/**
 * The `archived` counter (archive copies, `archive: true` forwards included) after an upgrade:
 * the real `serve` (from source) on the data dir an old version left (test/fixtures/upgrade,
 * schema 1, which counted no `archived`). Without a backfill, /metrics' archived total and the
 * stats page's "Copies archived" said 0 beside an archive the old version had filled (8 copies).
 * A database that already counts them must keep its figures (no second count at a later start).
 */
import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { find, parseExposition } from "../helpers/exposition.ts";
import { sendOne } from "../smtp/helpers.ts";
import { serveDir, startServe } from "../smtp/serve-process.ts";

const FIXTURE = join(import.meta.dir, "../fixtures/upgrade");

function copyFixture(): string {
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), readFileSync(join(FIXTURE, "rules.yaml"), "utf8"));
  for (const sub of ["spool", "archive"]) cpSync(join(FIXTURE, sub), join(dir, "data", sub), { recursive: true });
  const db = new Database(join(dir, "data", "mail-gateway.db"), { create: true });
  db.exec(readFileSync(join(FIXTURE, "mail-gateway.sql"), "utf8"));
  db.close();
  return dir;
}

async function archivedTotal(httpUrl: string): Promise<number | undefined> {
  return find(parseExposition(await (await fetch(`${httpUrl}metrics`)).text()).samples, "mailgw_messages_archived_total");
}

function archivedByDay(dir: string): Record<string, number> {
  const db = new Database(join(dir, "data", "mail-gateway.db"), { readonly: true });
  try {
    const rows = db.query<{ day: string; n: number }, []>(`SELECT day, SUM(n) AS n FROM daily_counters WHERE metric = 'archived' GROUP BY day`).all();
    return Object.fromEntries(rows.map((r) => [r.day, r.n]));
  } finally {
    db.close();
  }
}

test("an upgraded database counts the archive copies the old version made, once", async () => {
  const dir = copyFixture();
  const fixture = new Database(join(dir, "data", "mail-gateway.db"), { readonly: true });
  const copies = fixture.query<{ n: number }, []>("SELECT count(*) AS n FROM messages WHERE archive = 1").get()?.n;
  fixture.close();
  expect(copies).toBe(8); // 5 of the archive action, 3 of a forward rule with archive: true

  let serve = await startServe("source", dir);
  try {
    await serve.waitForLog((l) => l.msg === "database schema upgraded");
    expect(await archivedTotal(serve.httpUrl)).toBe(8);
    expect(archivedByDay(dir)).toEqual({ "2026-10-15": 3, "2026-11-24": 5 });
    await sendOne(serve.smtpPort, "archive after upgrade"); // default: archive
    expect(await archivedTotal(serve.httpUrl)).toBe(9);
  } finally {
    expect(await serve.stop()).toBe(0);
  }

  // A later start (no migration left) neither counts them again nor loses the new one.
  serve = await startServe("source", dir);
  try {
    expect(serve.logs.filter((l) => l.msg === "database schema upgraded")).toEqual([]);
    expect(await archivedTotal(serve.httpUrl)).toBe(9);
  } finally {
    expect(await serve.stop()).toBe(0);
  }
}, 60_000);
