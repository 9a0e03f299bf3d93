/**
 * README "Backups", done as written while the real `mailgw serve` (from source) takes mail: the
 * message files are copied first, then the database with sqlite3 (README's command); restored
 * on other paths (another DATA_DIR and DATABASE_URL). A message that got its 250 between the
 * two copies has a record in the backup but no file: at the next start its record must stay
 * (README: "its record is kept"). It was in the last commit group before the backup, whose
 * durable mark used to be written only with the next group, so recovery took it for a crash
 * before the reply and deleted it ("record without its spool file ... removed").
 * The database copy is README's own command line (its "Backups" block), run as written;
 * on a database of a year's size while mail keeps coming, it must finish: the
 * `.backup` it was restarts its copy whenever another connection commits, so under steady mail
 * it copied the same pages for as long as it was left running.
 */
import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { cpSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { openDatabase } from "../../src/store/db.ts";
import { REPO_ROOT } from "../packaging/binary.ts";
import { sendOne } from "../smtp/helpers.ts";
import { serveDir, startServe } from "../smtp/serve-process.ts";

const SQLITE3 = Bun.which("sqlite3");
if (SQLITE3 === null) console.warn("skip: backup/restore test: sqlite3 is not installed (apt-get install -y sqlite3)");

/** README's database backup line, without sudo, on `db` into `dest`: a bash command. */
function readmeBackup(db: string, dest: string): string[] {
  const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
  const line = /^sudo (sqlite3 \/var\/lib\/mailgw\/data\/mail-gateway\.db .*)$/m.exec(readme.slice(readme.indexOf("### Backups")))?.[1];
  if (!line) throw new Error("README.md's Backups section has no `sudo sqlite3 /var/lib/mailgw/data/mail-gateway.db ...` line");
  const command = line.replace("sqlite3", SQLITE3 ?? "sqlite3").replace("/var/lib/mailgw/data/mail-gateway.db", db).replace("/root/mailgw-$(date +%F).db", dest);
  return ["bash", "-c", command];
}

test.skipIf(SQLITE3 === null)("files, then README's database backup while serving, restored elsewhere: the message between the two copies keeps its record", async () => {
  const dir = serveDir();
  const data = join(dir, "data");
  const live = await startServe("source", dir);
  const before = await sendOne(live.smtpPort, "before the file copy");

  const restored = join(dir, "restored");
  mkdirSync(join(restored, "data"), { recursive: true });
  mkdirSync(join(restored, "db"));
  for (const sub of ["archive", "spool"]) cpSync(join(data, sub), join(restored, "data", sub), { recursive: true, preserveTimestamps: true });
  const between = await sendOne(live.smtpPort, "between the two copies");
  const backup = Bun.spawnSync(readmeBackup(join(data, "mail-gateway.db"), join(restored, "db", "backup.db")), { stderr: "pipe" });
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

test.skipIf(SQLITE3 === null)("README's backup command finishes on a year-sized database while mail keeps coming", async () => {
  const dir = serveDir();
  const dbPath = join(dir, "data", "mail-gateway.db");
  // ~190 MB: 300,000 rejected messages of a year, as their rows are (a 400-character subject).
  const seed = openDatabase(dbPath);
  seed.run(
    `WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 300000)
     INSERT INTO messages (id, received_at, client_ip, helo, tls, mail_from, recipients, subject, size, rule, category, action, archive, status)
       SELECT printf('%026d', i), ? + i * 100000, '192.0.2.1', 'mx.sender.example', 1, 'spammer@sender.example', '["b@company.com"]',
              printf('%.400c', 'x'), 2000, 'reject-spam', 'spam', 'reject', 0, 'done' FROM k`,
    [Date.now() - 365 * 86_400_000],
  );
  seed.close();
  const live = await startServe("source", dir, { RATE_LIMIT_MAX: "100000" });
  // Three senders, one message after the other each: a commit every few tens of milliseconds.
  let sending = true;
  let sent = 0;
  const senders = [1, 2, 3].map(async (n) => {
    while (sending) {
      await sendOne(live.smtpPort, `steady ${n}`);
      sent++;
    }
  });
  while (sent < 10) await Bun.sleep(50);

  const dest = join(dir, "backup.db");
  const started = Date.now();
  const backup = Bun.spawn(readmeBackup(dbPath, dest), { stderr: "pipe", timeout: 30_000 });
  const code = await backup.exited;
  const seconds = (Date.now() - started) / 1000;
  const sentDuring = sent;
  sending = false;
  await Promise.all(senders);
  expect(await live.stop()).toBe(0);

  expect({ code, signal: backup.signalCode, stderr: await new Response(backup.stderr).text() }).toEqual({ code: 0, signal: null, stderr: "" });
  expect(sentDuring).toBeGreaterThan(10); // mail did flow while it ran
  expect(seconds).toBeLessThan(30);
  const copy = new Database(dest, { readonly: true });
  expect(copy.query<{ integrity_check: string }, []>("PRAGMA integrity_check").get()?.integrity_check).toBe("ok");
  expect(copy.query<{ n: number }, []>("SELECT count(*) AS n FROM messages").get()?.n).toBeGreaterThan(300_000);
  copy.close();
}, 90_000);
