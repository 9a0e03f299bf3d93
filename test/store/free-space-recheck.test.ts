/**
 * store/free-space.ts: a declared size the cached reading refuses is checked on a new reading
 * when that one is older than RECHECK_AFTER_MS (a sender retrying right after space was freed
 * got 452 for up to a second more), with the disks' reading and the clock faked: one extra
 * reading per interval whatever the number of MAIL commands, and a reading that never answers
 * holds a MAIL at most RECHECK_WAIT_MS.
 */
import { expect, test } from "bun:test";
import { createLogger } from "../../src/log/logger.ts";
import { createFreeSpaceMonitor, RECHECK_AFTER_MS, RECHECK_WAIT_MS, STORAGE_RESERVE_BYTES, type DiskReading } from "../../src/store/free-space.ts";

const MB = 1024 * 1024;

function fakeDisk() {
  const disk = { free: 0.5 * MB, reads: 0, hang: false, clock: 1_000_000 };
  const monitor = createFreeSpaceMonitor({
    dataDir: "/nonexistent/data",
    databasePath: "/nonexistent/data/db.sqlite",
    maxMessageBytes: 2 * MB,
    logger: createLogger({ level: "error", format: "json", write: () => {} }),
    now: () => disk.clock,
    read: async () => {
      disk.reads++;
      if (disk.hang) return new Promise<DiskReading[]>(() => {});
      return [{ roles: ["spool", "archive", "database"], path: "/x", freeBytes: disk.free }];
    },
  });
  return { disk, monitor };
}

test("a refused size is checked again on a new reading once the last is older than RECHECK_AFTER_MS", async () => {
  const { disk, monitor } = fakeDisk();
  await monitor.refresh();
  expect(monitor.roomFor(MB)).toBe(false); // the reading is fresh: no new one
  expect(disk.reads).toBe(1);
  disk.free = 50 * MB; // space freed
  disk.clock += RECHECK_AFTER_MS - 1;
  expect(monitor.roomFor(MB)).toBe(false);
  disk.clock += 1;
  expect(await monitor.roomFor(MB)).toBe(true);
  expect(disk.reads).toBe(2);
  // What fits is answered from the cache, without a reading.
  disk.clock += 10_000;
  expect(monitor.roomFor(MB)).toBe(true);
  expect(monitor.roomFor(50 * MB - STORAGE_RESERVE_BYTES)).toBe(true);
  expect(disk.reads).toBe(2);
});

test("a flood of MAIL on a full disk: at most one new reading per RECHECK_AFTER_MS, shared by the MAILs waiting", async () => {
  const { disk, monitor } = fakeDisk();
  await monitor.refresh();
  const answers: (boolean | Promise<boolean>)[] = [];
  // 10,000 MAIL commands over one second of the fake clock, 100 per 10 ms.
  for (let ms = 0; ms < 1000; ms += 10) {
    for (let i = 0; i < 100; i++) answers.push(monitor.roomFor(MB));
    await Promise.all(answers.splice(0));
    disk.clock += 10;
  }
  expect(disk.reads).toBeLessThanOrEqual(1 + 1000 / RECHECK_AFTER_MS);
  expect(disk.reads).toBeGreaterThan(1);
});

test("a reading that never answers: the MAIL gets the last figures' answer after RECHECK_WAIT_MS, and no more readings pile up", async () => {
  const { disk, monitor } = fakeDisk();
  await monitor.refresh();
  disk.hang = true;
  disk.clock += RECHECK_AFTER_MS;
  const started = performance.now();
  expect(await monitor.roomFor(MB)).toBe(false);
  expect(performance.now() - started).toBeGreaterThanOrEqual(RECHECK_WAIT_MS - 5);
  expect(performance.now() - started).toBeLessThan(RECHECK_WAIT_MS + 500);
  disk.clock += 10 * RECHECK_AFTER_MS;
  expect(await monitor.roomFor(MB)).toBe(false);
  expect(disk.reads).toBe(2); // the hung one is waited for, not read again beside it
});
