/**
 * The intake takes back the counters of a group whose clients get 451 only for rows that were
 * committed: when the spool writer thread dies before it committed a group's rows, nothing was
 * counted, and subtracting anyway left /metrics and the stats page below the mail received.
 */
import { expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Intake } from "../../src/act/intake.ts";
import { newMessageId } from "../../src/spool/ids.ts";
import { IncomingFile } from "../../src/spool/incoming-file.ts";
import { SpoolFlusher } from "../../src/spool/spool-flusher.ts";
import { Spool } from "../../src/spool/spool.ts";
import { openDatabase } from "../../src/store/db.ts";
import type { MessageRow } from "../../src/store/messages.ts";

function row(id: string, size: number): MessageRow {
  return {
    id, receivedAt: Date.now(), clientIp: "192.0.2.1", helo: "x", tls: false, mailFrom: "a@b.org", recipients: ["bob@example.com"],
    subject: "s", size, rule: null, category: "default", action: "archive", archive: true, status: "spooled",
  };
}

test.skipIf(process.platform !== "linux")("writer thread dead before committing a group's rows: its 451 takes back no counts", async () => {
  const dir = await mkdtemp(join(tmpdir(), "intake-uncount-"));
  const dbPath = join(dir, "mailgw.db");
  const db = openDatabase(dbPath);
  const spool = new Spool(dir);
  await spool.ensureDirs();
  const started = await SpoolFlusher.start(spool.dir, { path: dbPath, walFsync: null });
  if (!started.flusher) throw new Error(`no flusher: ${started.reason}`);
  const flusher = started.flusher;
  expect(flusher.rowsUnavailable).toBeNull();
  const intake = new Intake(db, spool);
  intake.useFlusher(flusher, { coversWal: true });
  const received = () => db.query<{ n: number }, []>("SELECT coalesce(sum(n), 0) AS n FROM daily_counters WHERE metric = 'received'").get()?.n;
  const receive = async (text: string) => {
    const file = await IncomingFile.create(spool, newMessageId(), Date.now(), 1 << 20);
    file.write(new TextEncoder().encode(text));
    await file.end();
    return intake.commit({ row: row(file.id, file.size), file, deliveries: [] });
  };
  try {
    await receive("first\r\n");
    expect(received()).toBe(1);
    const died = new Promise<void>((resolve) => flusher.onDeath(() => resolve()));
    // A batch the thread dies of, then a group queued behind it: its rows are never committed.
    (flusher as unknown as { worker: Worker }).worker.postMessage({ kind: "sync", seq: -5, jobs: null });
    const caught = receive("caught in the middle\r\n");
    await died;
    await expect(caught).rejects.toThrow();
    expect(db.query<{ n: number }, []>("SELECT count(*) AS n FROM messages").get()?.n).toBe(1);
    expect(received()).toBe(1);
  } finally {
    intake.useFlusher(null, { coversWal: false });
    await flusher.close();
    db.close();
    await rm(dir, { recursive: true, force: true });
  }
});
