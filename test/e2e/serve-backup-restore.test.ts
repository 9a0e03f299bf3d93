/**
 * README "Backups", done as written while the real `mailgw serve` (from source) takes mail: the
 * message files are copied first, then the database with sqlite3's online `.backup`; restored
 * on other paths (another DATA_DIR and DATABASE_URL). A message that got its 250 between the
 * two copies has a record in the backup but no file: at the next start its record must stay
 * (README: "its record is kept"). It was in the last commit group before the backup, whose
 * durable mark used to be written only with the next group, so recovery took it for a crash
 * before the reply and deleted it ("record without its spool file ... removed").
 */
import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { cpSync, existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { sendOne } from "../smtp/helpers.ts";
import { serveDir, startServe } from "../smtp/serve-process.ts";

const SQLITE3 = Bun.which("sqlite3");
if (SQLITE3 === null) console.warn("skip: backup/restore test: sqlite3 is not installed (apt-get install -y sqlite3)");

test.skipIf(SQLITE3 === null)("files, then sqlite3 .backup while serving, restored elsewhere: the message between the two copies keeps its record", async () => {
  const dir = serveDir();
  const data = join(dir, "data");
  const live = await startServe("source", dir);
  const before = await sendOne(live.smtpPort, "before the file copy");

  const restored = join(dir, "restored");
  mkdirSync(join(restored, "data"), { recursive: true });
  mkdirSync(join(restored, "db"));
  for (const sub of ["archive", "spool"]) cpSync(join(data, sub), join(restored, "data", sub), { recursive: true, preserveTimestamps: true });
  const between = await sendOne(live.smtpPort, "between the two copies");
  const backup = Bun.spawnSync([SQLITE3 ?? "sqlite3", join(data, "mail-gateway.db"), `.backup '${join(restored, "db", "backup.db")}'`], { stderr: "pipe" });
  expect(backup.stderr.toString()).toBe("");
  expect(backup.exitCode).toBe(0);
  expect(await live.stop()).toBe(0);

  const again = await startServe("source", dir, { DATA_DIR: join(restored, "data"), DATABASE_URL: `file:${join(restored, "db", "backup.db")}` });
  const recovered = await again.waitForLog((l) => l.msg === "spool recovered");
  const after = await sendOne(again.smtpPort, "after the restore");
  expect(await again.stop()).toBe(0);

  expect(again.logs.filter((l) => String(l.msg).startsWith("record without its spool file"))).toEqual([]);
  expect(recovered.unacknowledged).toBe(0);
  const db = new Database(join(restored, "db", "backup.db"), { readonly: true });
  const ids = db.query<{ id: string }, []>("SELECT id FROM messages ORDER BY id").all().map((r) => r.id);
  const received = db.query<{ n: number }, []>("SELECT sum(n) AS n FROM daily_counters WHERE metric = 'received'").get()?.n;
  const archivePaths = db.query<{ archive_path: string }, []>("SELECT archive_path FROM messages ORDER BY id").all().map((r) => r.archive_path);
  db.close();
  expect(ids).toEqual([before, between, after].sort());
  expect(received).toBe(3);
  // Paths in the database are relative to DATA_DIR: the copy made before the move is found.
  expect(archivePaths.filter((p) => existsSync(join(restored, "data", p))).length).toBe(2);
}, 60_000);
