/**
 * store/free-space.ts: the arithmetic (what a declared size may be, when a disk is low and when it
 * has recovered, the words of the warning) and the monitor on a real directory (file systems
 * shared by the spool, archive and database read once, a missing archive/ read at its parent,
 * one log line per crossing, never one per reading).
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../../src/log/logger.ts";
import {
  createFreeSpaceMonitor, declaredSizeLimit, isLow, lowInodesThreshold, lowInodesWarning, lowSpaceThreshold, lowSpaceWarning, STORAGE_RESERVE_BYTES, type DiskReading,
} from "../../src/store/free-space.ts";

const MB = 1024 * 1024;
const disk = (roles: DiskReading["roles"], freeBytes: number | null): DiskReading => ({ roles, path: "/x", freeBytes });

describe("declaredSizeLimit", () => {
  test("one file system for everything: its free space less the reserve", () => {
    expect(declaredSizeLimit([disk(["spool", "archive", "database"], 10 * MB)])).toBe(10 * MB - STORAGE_RESERVE_BYTES);
  });
  test("the least of the spool's and the archive's", () => {
    expect(declaredSizeLimit([disk(["spool", "database"], 50 * MB), disk(["archive"], 8 * MB)])).toBe(7 * MB);
    expect(declaredSizeLimit([disk(["spool"], 3 * MB), disk(["archive"], 8 * MB)])).toBe(2 * MB);
  });
  test("a database-only file system limits nothing while it keeps the reserve, everything when it does not", () => {
    expect(declaredSizeLimit([disk(["spool", "archive"], 50 * MB), disk(["database"], 2 * MB)])).toBe(49 * MB);
    expect(declaredSizeLimit([disk(["spool", "archive"], 50 * MB), disk(["database"], STORAGE_RESERVE_BYTES - 1)])).toBeLessThan(0);
  });
  test("unknown is enough: an unreadable file system never refuses mail", () => {
    expect(declaredSizeLimit([disk(["spool", "archive", "database"], null)])).toBe(Infinity);
    expect(declaredSizeLimit([])).toBe(Infinity);
    expect(declaredSizeLimit([disk(["spool"], null), disk(["archive"], 5 * MB)])).toBe(4 * MB);
  });
});

describe("low and recovered", () => {
  const threshold = lowSpaceThreshold(25 * MB);
  test("the threshold is 1.5× the message size limit (Postfix's queue_minfree advice)", () => {
    expect(threshold).toBe(37.5 * MB);
  });
  test("low below it; recovered only 10% above it, so a disk at the edge does not log every second", () => {
    expect(isLow(false, threshold, threshold)).toBe(false);
    expect(isLow(false, threshold - 1, threshold)).toBe(true);
    expect(isLow(true, threshold, threshold)).toBe(true);
    expect(isLow(true, threshold * 1.1 - 1, threshold)).toBe(true);
    expect(isLow(true, threshold * 1.1, threshold)).toBe(false);
  });
  test("an unreadable disk keeps its state", () => {
    expect(isLow(true, null, threshold)).toBe(true);
    expect(isLow(false, null, threshold)).toBe(false);
  });
});

describe("lowSpaceWarning", () => {
  test("says which disk, how much, against which limit, and what it means; no path", () => {
    expect(lowSpaceWarning(["spool", "archive", "database"], 12.7 * MB, 25 * MB)).toBe(
      "the data dir's disk has 12 MB free, less than 1.5× the 25 MB message size limit: larger messages get 452 when their size is declared, else 451",
    );
    expect(lowSpaceWarning(["archive"], 3.25 * MB, 25 * MB)).toBe(
      "the archive disk has 3.3 MB free, less than 1.5× the 25 MB message size limit: larger messages get 452 when their size is declared, else wait in the spool",
    );
    expect(lowSpaceWarning(["database"], 0.5 * MB, 0.5 * MB)).toBe(
      "the database disk has 0.5 MB free, less than 1.5× the 0.5 MB message size limit: once it is full, every message gets 451",
    );
  });
});

describe("inodes", () => {
  test("low below 5% of the file system's inodes, at most 50,000", () => {
    expect(lowInodesThreshold(2000)).toBe(100);
    expect(lowInodesThreshold(3_276_800)).toBe(50_000); // a 50 GB ext4
    expect(lowInodesThreshold(0)).toBe(0); // no fixed count: never low
  });
  test("the warning says which disk, how many are left and what it means; no path", () => {
    expect(lowInodesWarning(["spool", "archive", "database"], 42)).toBe(
      "the data dir's disk has 42 free inodes left (each stored message is a file): when none are left, every message gets 451",
    );
    expect(lowInodesWarning(["archive"], 7)).toStartWith("the archive disk has 7 free inodes left");
  });
});

describe("the monitor on a real directory", () => {
  function monitor(maxMessageBytes: number) {
    const lines: { level: string; msg: string; disk?: string }[] = [];
    const logger = createLogger({ level: "debug", format: "json", write: (s) => void lines.push(JSON.parse(s)) });
    const dataDir = mkdtempSync(join(tmpdir(), "mailgw-free-space-"));
    // No spool/ or archive/ yet: read at DATA_DIR, one file system with the database's directory.
    return { lines, m: createFreeSpaceMonitor({ dataDir, databasePath: join(dataDir, "mail-gateway.db"), maxMessageBytes, logger }) };
  }

  test("before the first reading every size fits; after it, what the disk holds decides", async () => {
    const { m, lines } = monitor(1024);
    expect(m.roomFor(Number.MAX_SAFE_INTEGER)).toBe(true);
    await m.refresh();
    expect(m.roomFor(1024)).toBe(true);
    expect(m.roomFor(Number.MAX_SAFE_INTEGER)).toBe(false);
    expect(m.warnings()).toEqual([]);
    expect(lines).toEqual([]);
  });

  test("a disk below 1.5× the limit: one warning, one log line however often it is read", async () => {
    const { m, lines } = monitor(Number.MAX_SAFE_INTEGER / 2);
    for (let i = 0; i < 5; i++) await m.refresh();
    expect(m.warnings()).toHaveLength(1);
    expect(m.warnings()[0]).toStartWith("the data dir's disk has ");
    expect(lines.map((l) => [l.level, l.msg, l.disk])).toEqual([["warn", "free disk space low", "spool+archive+database"]]);
  });

  test("readings overlapping (a slow disk) are one reading", async () => {
    const { m } = monitor(1024);
    const a = m.refresh();
    expect(m.refresh()).toBe(a);
    await a;
  });
});
