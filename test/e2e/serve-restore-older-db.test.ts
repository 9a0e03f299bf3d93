/**
 * A database restored from a backup older than the spool (the database alone was damaged, the
 * live spool kept: README "Backups" copies spool/ back with rsync, which deletes nothing). A
 * forward accepted after the backup, still held in the spool, has no record in the restored
 * database: recovery moves it to spool/orphaned/, and nothing sends it. Its log line said
 * "never acknowledged", and the admin had no reason to look at a message that did get its 250.
 */
import { expect, test } from "bun:test";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sendOne } from "../smtp/helpers.ts";
import { serveDir, startServe } from "../smtp/serve-process.ts";

const SQLITE3 = Bun.which("sqlite3");
if (SQLITE3 === null) console.warn("skip: restore test: sqlite3 is not installed (apt-get install -y sqlite3)");

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - name: to-ops
    priority: 10
    category: ops
    action: forward
    forward_to: ops@forward.example
    conditions:
      - { field: subject, operator: starts_with, value: fwd }
`;

test.skipIf(SQLITE3 === null)("a spool file newer than a restored database is logged as accepted mail to send again, not as never acknowledged", async () => {
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), RULES);
  const db = join(dir, "data", "mail-gateway.db");
  const backup = join(dir, "backup.db");
  // No relay: forwards are held in the spool.
  let serve = await startServe("source", dir);
  let afterBackup: string;
  try {
    await sendOne(serve.smtpPort, "fwd before the backup");
    const dump = Bun.spawnSync([SQLITE3 ?? "sqlite3", db, `VACUUM INTO '${backup}'`]);
    expect(dump.exitCode).toBe(0);
    afterBackup = await sendOne(serve.smtpPort, "fwd after the backup");
  } finally {
    expect(await serve.stop()).toBe(0);
  }
  // README's restore: the backed-up .db in place, its -wal and -shm gone; spool/ as it is.
  rmSync(db);
  for (const f of [`${db}-wal`, `${db}-shm`]) rmSync(f, { force: true });
  Bun.spawnSync(["cp", backup, db]);

  serve = await startServe("source", dir);
  try {
    const line = await serve.waitForLog((l) => l.id === afterBackup && String(l.msg).startsWith("spool file without a record"));
    expect(String(line.msg)).not.toContain("never acknowledged");
    expect(String(line.hint)).toContain("restored from a backup older than the spool");
    expect(String(line.hint)).toContain("send it to mailgw again");
    expect(existsSync(join(dir, "data", "spool", "orphaned", `${afterBackup}.eml`))).toBe(true);
  } finally {
    expect(await serve.stop()).toBe(0);
  }
}, 60_000);
