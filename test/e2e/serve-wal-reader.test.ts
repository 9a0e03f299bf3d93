/**
 * An admin leaves `sqlite3 data/mail-gateway.db` open inside `BEGIN; SELECT …` while mail flows:
 * no checkpoint can pass that snapshot, so the WAL grows. Intake must go on meanwhile, and once
 * the reader is gone the WAL must shrink back on disk (SQLite reuses it but never truncates it
 * without journal_size_limit), not stay hundreds of MB until serve restarts.
 * The real compiled `serve`; the growth is made quickly by a second connection writing (and
 * dropping) a filler table while the snapshot is held, as a busy hour of mail would.
 */
import { Database } from "bun:sqlite";
import { afterEach, expect, test } from "bun:test";
import { statSync } from "node:fs";
import { join } from "node:path";
import { WAL_SIZE_LIMIT_BYTES } from "../../src/store/db.ts";
import { submit, testMessage } from "../helpers/interop.ts";
import { cleanupBinary, serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";

let serve: ServeProcess | null = null;
afterEach(async () => {
  await serve?.stop();
  serve = null;
  cleanupBinary();
}, 60_000);

const walSize = (db: string): number => statSync(`${db}-wal`, { throwIfNoEntry: false })?.size ?? 0;

async function send(port: number, n: number): Promise<string> {
  return submit(port, { raw: testMessage(`wal ${n}`, "Hello.\r\n"), from: "alice@sender.example", rcpts: ["bob@company.com"] });
}

test("a long-held reader: intake goes on, and the WAL shrinks back once the reader is gone", async () => {
  const dir = serveDir();
  serve = await startServe("binary", dir);
  const dbPath = join(dir, "data", "mail-gateway.db");
  expect(await send(serve.smtpPort, 0)).toStartWith("250");

  const reader = new Database(dbPath, { readonly: true });
  reader.exec("BEGIN");
  reader.query("SELECT count(*) FROM messages").get();

  const filler = new Database(dbPath);
  filler.exec("PRAGMA busy_timeout = 5000");
  filler.exec("CREATE TABLE wal_filler (b BLOB)");
  const target = 2 * WAL_SIZE_LIMIT_BYTES;
  for (let i = 0; walSize(dbPath) < target && i < 200; i++) {
    filler.transaction(() => {
      for (let j = 0; j < 64; j++) filler.query("INSERT INTO wal_filler VALUES (randomblob(4000))").run();
    })();
    if (i % 20 === 0) expect(await send(serve.smtpPort, i + 1)).toStartWith("250");
  }
  filler.exec("DROP TABLE wal_filler");
  filler.close();
  expect(walSize(dbPath)).toBeGreaterThan(target);

  reader.exec("COMMIT");
  reader.close();
  // serve's next commits checkpoint the WAL and start it over, truncated to the limit.
  for (let i = 0; i < 30 && walSize(dbPath) > WAL_SIZE_LIMIT_BYTES; i++) {
    expect(await send(serve.smtpPort, 1000 + i)).toStartWith("250");
    await Bun.sleep(100);
  }
  expect(walSize(dbPath)).toBeLessThanOrEqual(WAL_SIZE_LIMIT_BYTES);
}, 120_000);
