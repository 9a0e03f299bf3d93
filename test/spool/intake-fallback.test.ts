/**
 * The intake without its spool writer thread: when the thread dies (the pipeline then calls
 * useFlusher(null)), messages already prepared for it fail with an error (the client gets 451
 * and retries), and the next ones are written, fsynced and renamed by the intake itself.
 */
import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
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

test("writer thread gone: prepared messages fail, later ones are stored by the intake itself", async () => {
  if (process.platform !== "linux") {
    console.log("skipped: the spool writer thread needs Linux (syncfs)");
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), "intake-fallback-"));
  const db = openDatabase(join(dir, "mailgw.db"));
  const spool = new Spool(dir);
  await spool.ensureDirs();
  const started = await SpoolFlusher.start(spool.dir);
  if (!started.flusher) throw new Error(`no flusher: ${started.reason}`);
  const flusher = started.flusher;
  const intake = new Intake(db, spool);
  intake.useFlusher(flusher, { coversWal: true });
  const receive = async (text: string) => {
    const file = await IncomingFile.create(spool, newMessageId(), Date.now(), 1 << 20);
    file.write(new TextEncoder().encode(text));
    await file.end();
    return { file, done: intake.commit({ row: row(file.id, file.size), file, deliveries: [] }) };
  };
  try {
    const first = await receive("first\r\n");
    await first.done;
    expect(await readFile(spool.pathOf(first.file.id), "utf8")).toBe("first\r\n");

    const died = new Promise<void>((resolve) => flusher.onDeath(() => resolve()));
    (flusher as unknown as { worker: Worker }).worker.postMessage({ kind: "sync", seq: -5, jobs: null });
    const caught = await receive("caught in the middle\r\n"); // prepared for the thread
    await died;
    intake.useFlusher(null, { coversWal: false });
    await expect(caught.done).rejects.toThrow();
    expect(existsSync(spool.pathOf(caught.file.id))).toBe(false);

    const later = await receive("after the thread died\r\n");
    await later.done;
    expect(await readFile(spool.pathOf(later.file.id), "utf8")).toBe("after the thread died\r\n");
    const ids = db.query<{ id: string }, []>("SELECT id FROM messages ORDER BY id").all().map((r) => r.id);
    expect(ids).toEqual([first.file.id, later.file.id].sort());
  } finally {
    await flusher.close();
    db.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("without the writer thread: a database file deleted under the intake → the message is refused, its file removed", async () => {
  const dir = await mkdtemp(join(tmpdir(), "intake-fallback-"));
  const dbPath = join(dir, "mailgw.db");
  const db = openDatabase(dbPath);
  const spool = new Spool(dir);
  await spool.ensureDirs();
  const intake = new Intake(db, spool);
  try {
    for (const suffix of ["", "-wal", "-shm"]) await rm(`${dbPath}${suffix}`, { force: true });
    const file = await IncomingFile.create(spool, newMessageId(), Date.now(), 1 << 20);
    file.write(new TextEncoder().encode("after the database was deleted\r\n"));
    await file.end();
    await expect(intake.commit({ row: row(file.id, file.size), file, deliveries: [] })).rejects.toThrow(`database ${dbPath} was deleted since mailgw opened it`);
    expect(existsSync(spool.pathOf(file.id))).toBe(false);
  } finally {
    db.close();
    await rm(dir, { recursive: true, force: true });
  }
});
