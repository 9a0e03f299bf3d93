/**
 * The start-up check of the last commit groups (serve-recovery-check.test.ts) with the archive
 * on a file system of its own (a disk mounted at DATA_DIR/archive, README's bigger archive
 * disk): an archived copy that does not match its row is moved to spool/orphaned/ like any other
 * — by a copy, a rename cannot cross file systems. The rename failed EXDEV and serve refused to
 * start ("EXDEV: cross-device link not permitted"), taking no mail until the admin deleted the
 * file by hand. Needs root (a tmpfs mount): elsewhere the test prints why it is skipped.
 */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { openDatabase } from "../../src/store/db.ts";
import { readIntakeMarks, writeIntakeMarks } from "../../src/store/intake-marks.ts";
import { withTmpfs } from "../helpers/tmpfs.ts";
import { sendOne } from "../smtp/helpers.ts";
import { serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";

test("an archived copy on another file system that does not match its row is moved aside; serve starts", async () => {
  const dir = serveDir();
  const archive = join(dir, "data", "archive");
  mkdirSync(archive, { recursive: true });
  await withTmpfs("mailgw-archive-mount-", 16, async (mnt) => {
    expect(spawnSync("mount", ["--bind", mnt, archive]).status).toBe(0);
    let running: ServeProcess | null = null;
    try {
      running = await startServe("source", dir);
      const kept = await sendOne(running.smtpPort, "kept");
      const broken = await sendOne(running.smtpPort, "broken");
      const dbPath = join(dir, "data", "mail-gateway.db");
      const archived = async (id: string) => existsSync(join(dir, "data", (await pathsOf(dbPath))[id] ?? "missing"));
      for (let i = 0; i < 100 && !((await archived(kept)) && (await archived(broken))); i++) await Bun.sleep(50);
      expect(await running.stop()).toBe(0);
      running = null;

      const paths = await pathsOf(dbPath);
      const keptBytes = await readFile(join(dir, "data", paths[kept] ?? "missing"));
      const brokenSize = (await readFile(join(dir, "data", paths[broken] ?? "missing"))).byteLength;
      // As if the power went out before the groups' durable mark was on disk, and the archive disk lost the copy's bytes.
      const db = openDatabase(dbPath);
      const marks = readIntakeMarks(db);
      db.transaction(() => writeIntakeMarks(db, { lastSeq: marks.lastSeq, durableSeq: 0 })).immediate();
      db.close();
      await writeFile(join(dir, "data", paths[broken] ?? "missing"), new Uint8Array(brokenSize));

      running = await startServe("source", dir);
      const warned = await running.waitForLog((l) => String(l.msg).startsWith("incomplete spool file") && l.id === broken);
      expect(String(warned.moved_to)).toContain(join("spool", "orphaned"));
      expect(existsSync(join(dir, "data", paths[broken] ?? "missing"))).toBe(false);
      expect(await readFile(join(dir, "data", "spool", "orphaned", `${broken}.eml`))).toEqual(Buffer.alloc(brokenSize));
      expect(await readFile(join(dir, "data", paths[kept] ?? "missing"))).toEqual(keptBytes);
      await sendOne(running.smtpPort, "after recovery");
      expect(await running.stop()).toBe(0);
      running = null;
    } finally {
      if (running) await running.stop("SIGKILL");
      spawnSync("umount", [archive]);
    }
  });
}, 60_000);

async function pathsOf(dbPath: string): Promise<Record<string, string>> {
  const db = openDatabase(dbPath, { readonly: true });
  try {
    return Object.fromEntries(
      db.query<{ id: string; archive_path: string | null }, []>("SELECT id, archive_path FROM messages").all().map((r) => [r.id, r.archive_path ?? ""]),
    );
  } finally {
    db.close();
  }
}
