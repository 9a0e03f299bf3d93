/**
 * ARCHIVE_MAX_AGE_DAYS turned on for the first time on a gateway that has kept its archive for
 * a long while: the first pass prunes a large backlog in the background, for minutes at a
 * year's scale. A restart (an upgrade, `systemctl restart`) then comes in the middle of it.
 * The real `serve` (from source) on a data dir seeded with old archived messages, their files
 * and rows written through src/store.
 */
import { Database } from "bun:sqlite";
import { afterEach, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { newMessageId } from "../../src/spool/ids.ts";
import { dayKey, openDatabase } from "../../src/store/db.ts";
import { insertMessage } from "../../src/store/messages.ts";
import { serveDir, startServe, until, type ServeProcess } from "../smtp/serve-process.ts";

const DAY_MS = 86_400_000;
let serve: ServeProcess | null = null;
afterEach(async () => {
  if (serve?.proc.exitCode === null) await serve.stop("SIGKILL");
  serve = null;
}, 60_000);

/** `n` archived messages received 30 to 60 days ago, each with its file under archive/. */
function seedOldArchive(dataDir: string, n: number): void {
  const db = openDatabase(join(dataDir, "mail-gateway.db"));
  const now = Date.now();
  db.transaction(() => {
    for (let i = 0; i < n; i++) {
      const at = now - 60 * DAY_MS + Math.floor((i / n) * 30 * DAY_MS);
      const id = newMessageId(at);
      const rel = join("archive", dayKey(at), `${id}.eml`);
      mkdirSync(join(dataDir, "archive", dayKey(at)), { recursive: true });
      writeFileSync(join(dataDir, rel), "Subject: old\r\n\r\nold mail\r\n");
      insertMessage(db, {
        id, receivedAt: at, clientIp: "192.0.2.1", helo: "mx.sender.example", tls: true, mailFrom: "a@sender.example",
        recipients: ["b@company.com"], subject: "old", size: 26, rule: null, category: "default", action: "archive",
        archive: true, status: "done", archivePath: rel,
      });
    }
  })();
  db.close();
}

test("SIGTERM in the middle of the first retention pass: it stops between pages, says what it did, and logs no error", async () => {
  const dir = serveDir();
  const dataDir = join(dir, "data");
  seedOldArchive(dataDir, 20_000);
  serve = await startServe("source", dir, { ARCHIVE_MAX_AGE_DAYS: "7" });
  const db = new Database(join(dataDir, "mail-gateway.db"), { readonly: true });
  const cleared = (): number => db.query<{ n: number }, []>("SELECT count(*) AS n FROM messages WHERE archive_path IS NULL").get()?.n ?? 0;
  await until("the pass has cleared some rows", async () => cleared() > 0, 20_000);
  db.close();

  expect(await serve.stop("SIGTERM")).toBe(0);
  const errors = serve.logs.filter((l) => l.level === "error");
  expect(errors).toEqual([]);
  const pruned = serve.logs.find((l) => l.msg === "archive retention pruned");
  // Cut short: not all 20,000, and the line says the next start goes on with the rest.
  expect(pruned).toMatchObject({ stopped: true });
  expect(Number(pruned?.rows_cleared)).toBeGreaterThan(0);
  expect(Number(pruned?.rows_cleared)).toBeLessThan(20_000);
  // Logged before the process said it stopped, not after.
  expect(serve.logs.findIndex((l) => l.msg === "archive retention pruned")).toBeLessThan(serve.logs.findIndex((l) => l.msg === "stopped"));

  // The next start finishes the job: no old copy or row is left.
  serve = await startServe("source", dir, { ARCHIVE_MAX_AGE_DAYS: "7" });
  await serve.waitForLog((l) => l.msg === "archive retention pruned", 60_000);
  const after = new Database(join(dataDir, "mail-gateway.db"), { readonly: true });
  expect(after.query<{ n: number }, []>("SELECT count(*) AS n FROM messages").get()?.n).toBe(0);
  after.close();
  expect(await serve.stop("SIGTERM")).toBe(0);
}, 120_000);
