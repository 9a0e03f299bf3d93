/**
 * A database whose `messages` index is damaged (a torn page after a power cut on a disk that
 * lies about flushes): every message gets 451 ("database disk image is malformed") while the
 * rest of the file still reads and writes. /healthz said 503 for that until a message was
 * stored; its write probe (a row in `meta`, another b-tree) then went through and made it say
 * 200 at the first check, so monitoring saw a healthy gateway refusing all mail. The probe now
 * writes where a message's commit writes (a `messages` row, removed in the same transaction).
 */
import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { closeSync, openSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { RawClient, greet, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";

/** Overwrites the b-tree page header of index `name` (serve stopped): reads of the table still work, inserts into it fail. */
function damageIndex(dbPath: string, name: string): void {
  const db = new Database(dbPath);
  db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  const root = db.query<{ rootpage: number }, [string]>("SELECT rootpage FROM sqlite_master WHERE name = ?").get(name)?.rootpage ?? 0;
  const pageSize = db.query<{ page_size: number }, []>("PRAGMA page_size").get()?.page_size ?? 4096;
  db.close();
  expect(root).toBeGreaterThan(1);
  const fd = openSync(dbPath, "r+");
  writeSync(fd, Buffer.from([0x0d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), 0, 8, (root - 1) * pageSize);
  closeSync(fd);
}

test("messages index damaged: 451 for every message, and /healthz stays 503 however often it is asked", async () => {
  const dir = serveDir();
  let serve: ServeProcess | null = await startServe("source", dir);
  try {
    const c0 = await RawClient.connect(serve.smtpPort);
    await greet(c0);
    expect(await sendMail(c0, "b@company.com", simpleMessage("before"))).toMatch(/^250 /);
    c0.end();
    expect(await serve.stop("SIGTERM")).toBe(0);
    damageIndex(join(dir, "data", "mail-gateway.db"), "messages_received_at");

    serve = await startServe("source", dir);
    const c = await RawClient.connect(serve.smtpPort);
    await greet(c);
    expect(await sendMail(c, "b@company.com", simpleMessage("after"))).toMatch(/^451 4\.3\.0 /);
    for (let i = 0; i < 3; i++) {
      const res = await fetch(new URL("/healthz", serve.httpUrl));
      const body = (await res.json()) as { checks: { database: { reason?: string } } };
      expect({ code: res.status, reason: body.checks.database.reason }).toEqual({ code: 503, reason: "the last commit of a received message failed; every message gets 451" });
    }
    c.end();
  } finally {
    if (serve) expect(await serve.stop("SIGTERM")).toBe(0);
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
