/**
 * The start-up check of the last commit groups, on the real `mailgw serve` (from source): rows
 * are committed before the one syncfs that makes a group durable, so after a power loss a row
 * may point at a file that never got its bytes. Simulated here after a normal run: the durable
 * mark is set back and one archived file is zero-filled (same size). At the next start, serve
 * moves that file to spool/orphaned/, drops its row (its client never got 250), keeps the other
 * message untouched, and then accepts mail as usual.
 */
import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { openDatabase } from "../../src/store/db.ts";
import { readIntakeMarks, writeIntakeMarks } from "../../src/store/intake-marks.ts";
import { sendOne } from "../smtp/helpers.ts";
import { serveDir, startServe } from "../smtp/serve-process.ts";

test("a file that does not match its row after a crash is moved aside; the rest stays; serve goes on", async () => {
  const dir = serveDir();
  const first = await startServe("source", dir);
  const kept = await sendOne(first.smtpPort, "kept");
  const broken = await sendOne(first.smtpPort, "broken");
  expect(await first.stop()).toBe(0);

  const dbPath = join(dir, "data", "mail-gateway.db");
  const db = openDatabase(dbPath);
  const paths = Object.fromEntries(
    db.query<{ id: string; archive_path: string }, []>("SELECT id, archive_path FROM messages").all().map((r) => [r.id, r.archive_path]),
  );
  const keptBytes = await readFile(join(dir, "data", paths[kept] ?? "missing"));
  const brokenSize = (await readFile(join(dir, "data", paths[broken] ?? "missing"))).byteLength;
  // As if the power went out before the syncfs of the groups holding both messages finished.
  const marks = readIntakeMarks(db);
  db.transaction(() => writeIntakeMarks(db, { lastSeq: marks.lastSeq, durableSeq: 0 })).immediate();
  db.close();
  await writeFile(join(dir, "data", paths[broken] ?? "missing"), new Uint8Array(brokenSize));

  const second = await startServe("source", dir);
  const warned = await second.waitForLog((l) => String(l.msg).startsWith("incomplete spool file") && l.id === broken);
  expect(String(warned.moved_to)).toContain(join("spool", "orphaned"));
  expect(existsSync(join(dir, "data", paths[broken] ?? "missing"))).toBe(false);
  expect(existsSync(join(dir, "data", "spool", "orphaned", `${broken}.eml`))).toBe(true);
  expect(await readFile(join(dir, "data", paths[kept] ?? "missing"))).toEqual(keptBytes);
  const after = await sendOne(second.smtpPort, "after recovery");
  expect(await second.stop()).toBe(0);

  const check = openDatabase(dbPath, { readonly: true });
  const ids = check.query<{ id: string }, []>("SELECT id FROM messages ORDER BY id").all().map((r) => r.id);
  check.close();
  expect(ids).toEqual([kept, after].sort());
}, 60_000);
