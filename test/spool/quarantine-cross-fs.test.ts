/**
 * Spool.quarantineFrom across file systems (an archive disk of its own: the move is a copy, then
 * an unlink). A copy cut short — spool/orphaned's disk full — must leave nothing behind: each
 * start's recovery would otherwise add another partial `<id>.eml.N` there. Needs root (tmpfs
 * mounts): elsewhere the test prints why it is skipped.
 */
import { expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Spool } from "../../src/spool/spool.ts";
import { unmount, withTmpfs } from "../helpers/tmpfs.ts";
import { spawnSync } from "node:child_process";

test("a cross-file-system quarantine that runs out of space leaves no partial copy, and the original in place", async () => {
  const dataDir = await mkdtemp(join(tmpdir(), "mailgw-quarantine-"));
  try {
    const spool = new Spool(dataDir);
    await spool.ensureDirs();
    await withTmpfs("mailgw-orphans-", 1, async (small) => {
      expect(spawnSync("mount", ["--bind", small, spool.orphanDir]).status).toBe(0);
      try {
        await withTmpfs("mailgw-archive-", 8, async (archive) => {
          mkdirSync(join(archive, "2026-11-25"));
          const copy = join(archive, "2026-11-25", "01m89aaaaaaaaaaaaaaaaaaaaa.eml");
          writeFileSync(copy, new Uint8Array(3 * 1024 * 1024));
          for (let start = 0; start < 2; start++) {
            await expect(spool.quarantineFrom(copy)).rejects.toThrow(/ENOSPC|no space/i);
          }
          expect(readdirSync(spool.orphanDir)).toEqual([]);
          expect(existsSync(copy)).toBe(true);
        });
      } finally {
        unmount(spool.orphanDir);
      }
    });
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});
