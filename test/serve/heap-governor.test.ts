import { describe, expect, test } from "bun:test";
import { edenGC, heapSize } from "bun:jsc";
import { heapUsed, memoryNow, QUIET_GROWTH_BYTES, startHeapGovernor } from "../../src/serve/heap-governor.ts";

const MB = 1024 * 1024;

describe("heap governor", () => {
  test("collects once the heap has grown by the threshold since the last collection", () => {
    let size = 10 * MB;
    let collected = 0;
    const governor = startHeapGovernor({
      checkEveryMs: 60_000,
      growthBytes: 8 * MB,
      heapSize: () => size,
      collect: () => {
        collected++;
        size = 11 * MB; // what survived
      },
    });
    try {
      size = 17 * MB;
      expect(governor.check()).toBe(false);
      size = 18 * MB;
      expect(governor.check()).toBe(true);
      expect(collected).toBe(1);
      // Growth is measured from what survived (11 MB), not from the first floor.
      size = 18.5 * MB;
      expect(governor.check()).toBe(false);
      size = 19 * MB;
      expect(governor.check()).toBe(true);
      expect(governor.collections()).toBe(2);
    } finally {
      governor.stop();
    }
  });

  test("a collection JSC made on its own lowers the floor", () => {
    let size = 30 * MB;
    let collected = 0;
    const governor = startHeapGovernor({ checkEveryMs: 60_000, growthBytes: 8 * MB, heapSize: () => size, collect: () => void collected++ });
    try {
      size = 12 * MB; // JSC collected
      expect(governor.check()).toBe(false);
      size = 19 * MB; // +7 MB from 12: not yet
      expect(governor.check()).toBe(false);
      size = 21 * MB;
      expect(governor.check()).toBe(true);
      expect(collected).toBe(1);
    } finally {
      governor.stop();
    }
  });

  test("a young collection once the heap grew by youngGrowthBytes since any collection; a full one only if still over the floor", () => {
    let size = 10 * MB;
    const calls: string[] = [];
    let survivesYoung = 10 * MB;
    const governor = startHeapGovernor({
      checkEveryMs: 60_000,
      growthBytes: 8 * MB,
      youngGrowthBytes: 4 * MB,
      heapSize: () => size,
      collect: () => {
        calls.push("full");
        size = 10 * MB;
      },
      collectYoung: () => {
        calls.push("young");
        size = survivesYoung;
      },
    });
    try {
      size = 13.5 * MB;
      expect(governor.check()).toBe(false);
      expect(calls).toEqual([]);
      size = 14 * MB; // +4 MB of short-lived garbage: a young collection frees it
      expect(governor.check()).toBe(false);
      expect(calls).toEqual(["young"]);
      // Promoted objects: young collections leave 6, then 9 MB over the floor.
      survivesYoung = 16 * MB;
      size = 16 * MB; // +6 MB over the last young collection's 10: young again, 6 over the floor
      expect(governor.check()).toBe(false);
      expect(calls).toEqual(["young", "young"]);
      survivesYoung = 19 * MB;
      size = 20 * MB; // young → 19 MB, 9 MB over the floor: full
      expect(governor.check()).toBe(true);
      expect(calls).toEqual(["young", "young", "young", "full"]);
      expect(governor.youngCollections()).toBe(3);
      expect(governor.collections()).toBe(1);
      size = 12 * MB; // under both thresholds again
      expect(governor.check()).toBe(false);
      expect(calls).toHaveLength(4);
    } finally {
      governor.stop();
    }
  });

  // The governor reads heapUsed (constant time) instead of bun:jsc's heapSize (a walk of the
  // heap): both must follow allocation and collection alike, or its thresholds mean nothing.
  test("heapUsed follows bun:jsc's heapSize through allocation and a full collection", () => {
    Bun.gc(true);
    const close = (): void => expect(Math.abs(heapUsed() - heapSize())).toBeLessThan(4 * MB);
    const start = heapUsed();
    close();
    let kept: object[][] = [];
    // Both move only when JSC collects (see below): a young collection per round shows the growth.
    for (let round = 0; round < 100 && heapUsed() < start + 16 * MB; round++) {
      kept.push(Array.from({ length: 10_000 }, (_, i) => ({ round, i, text: `s ${i}` })));
      edenGC();
    }
    expect(heapUsed()).toBeGreaterThanOrEqual(start + 16 * MB);
    close();
    kept = [];
    Bun.gc(true);
    expect(heapUsed()).toBeLessThan(start + 4 * MB);
    close();
    expect(kept).toHaveLength(0);
  });

  test("with the real heap: promoted garbage is collected and the heap shrinks back", () => {
    Bun.gc(true);
    const start = heapUsed();
    const governor = startHeapGovernor({ checkEveryMs: 60_000, growthBytes: 4 * MB });
    try {
      // Objects that outlive young collections (as an SMTP session's do), then are dropped.
      let kept: object[][] = [];
      for (let round = 0; round < 100 && heapUsed() < start + 6 * MB; round++) {
        kept.push(Array.from({ length: 10_000 }, (_, i) => ({ round, i, text: `session ${round}/${i}` })));
        edenGC();
      }
      expect(heapUsed()).toBeGreaterThan(start + 4 * MB);
      kept = [];
      const grown = heapUsed();
      expect(governor.check()).toBe(true);
      expect(heapUsed()).toBeLessThan(grown - 4 * MB);
      expect(kept).toHaveLength(0);
    } finally {
      governor.stop();
    }
  });

  test("with the real heap: the default young collector runs, and no full collection under growthBytes", () => {
    Bun.gc(true);
    let fulls = 0;
    const governor = startHeapGovernor({ checkEveryMs: 60_000, growthBytes: 64 * MB, youngGrowthBytes: 4 * MB, collect: () => void fulls++ });
    try {
      const start = heapUsed();
      // Objects still referenced (sessions in flight) when the check comes: they survive it.
      // heapUsed (and bun:jsc's heapSize) move only when JSC collects; in a process with a big
      // heap (this file after the others in one `bun test`) JSC lets 40 MB go by without one, so
      // the test collects the young generation itself to make the growth visible.
      const inFlight: object[][] = [];
      for (let round = 0; round < 100 && heapUsed() - start < 5 * MB; round++) {
        inFlight.push(Array.from({ length: 10_000 }, (_, i) => ({ round, i })));
        edenGC();
      }
      expect(heapUsed() - start).toBeGreaterThanOrEqual(5 * MB);
      expect(governor.check()).toBe(false);
      expect(governor.youngCollections()).toBe(1);
      expect(fulls).toBe(0);
      expect(inFlight.flat()).toHaveLength(inFlight.length * 10_000);
    } finally {
      governor.stop();
    }
  });
  test("buffers count: young collections on heap + buffers growth; a full one at bufferGrowthBytes though the heap stayed", () => {
    const heap = 20 * MB;
    let buffers = 2 * MB;
    let promoted = 0; // chunks that lived through a young collection: only a full one frees them
    const calls: string[] = [];
    const governor = startHeapGovernor({
      checkEveryMs: 60_000,
      growthBytes: 8 * MB,
      youngGrowthBytes: 4 * MB,
      bufferGrowthBytes: 24 * MB,
      heapSize: () => heap,
      bufferSize: () => buffers,
      collectYoung: () => {
        calls.push("young");
        promoted += 3 * MB;
        buffers = 2 * MB + promoted;
      },
      collect: () => {
        calls.push("full");
        promoted = 0;
        buffers = 2 * MB;
      },
    });
    try {
      buffers += 3.5 * MB;
      expect(governor.check()).toBe(false);
      expect(calls).toEqual([]);
      // The heap itself never grows: counting it alone, nothing would ever be collected.
      // Each young collection leaves 3 MB more promoted: the 8th puts 24 MB over the floor.
      for (let i = 0; i < 8; i++) {
        buffers += 5 * MB;
        governor.check();
      }
      expect(calls).toEqual([...Array(8).fill("young"), "full"]);
      expect(governor.collections()).toBe(1);
      expect(buffers).toBeLessThan(2 * MB + 24 * MB);
    } finally {
      governor.stop();
    }
  });

  test("with real ArrayBuffers: memoryNow counts them, and the default reader collects on their growth", () => {
    Bun.gc(true);
    // Full collections only on heap + buffers growth (the heap's own threshold is out of reach).
    const governor = startHeapGovernor({ checkEveryMs: 60_000, growthBytes: 256 * MB, bufferGrowthBytes: 8 * MB });
    try {
      const before = memoryNow();
      let chunks: Uint8Array[] = Array.from({ length: 200 }, () => new Uint8Array(new ArrayBuffer(64 * 1024)));
      expect(memoryNow().buffers - before.buffers).toBeGreaterThanOrEqual(12 * MB);
      expect(chunks).toHaveLength(200);
      chunks = []; // written to their files: garbage
      expect(governor.check()).toBe(true);
      expect(memoryNow().buffers - before.buffers).toBeLessThan(2 * MB);
    } finally {
      governor.stop();
    }
  });

  test("idle: backs off once the heap is quiet; growth or wake() brings the fast checks back", () => {
    let size = 10 * MB;
    const governor = startHeapGovernor({ checkEveryMs: 60_000, idleCheckEveryMs: 600_000, quietChecks: 3, growthBytes: 64 * MB, heapSize: () => size });
    try {
      expect(governor.period()).toBe(60_000);
      size += QUIET_GROWTH_BYTES / 2; // timers allocate a little: still quiet
      for (let i = 0; i < 3; i++) governor.check();
      expect(governor.period()).toBe(600_000);
      size += 2 * MB; // a burst: fast again at the next check
      governor.check();
      expect(governor.period()).toBe(60_000);
      for (let i = 0; i < 3; i++) governor.check();
      expect(governor.period()).toBe(600_000);
      governor.wake(); // a message arrived
      expect(governor.period()).toBe(60_000);
    } finally {
      governor.stop();
    }
  });

  test("the timer follows the period: idle checks are rare, wake() reschedules at once", async () => {
    let checks = 0;
    const governor = startHeapGovernor({
      checkEveryMs: 10,
      idleCheckEveryMs: 60_000,
      quietChecks: 3,
      growthBytes: 64 * MB,
      heapSize: () => {
        checks++;
        return 10 * MB;
      },
    });
    try {
      await Bun.sleep(300);
      const afterBackOff = checks;
      expect(governor.period()).toBe(60_000);
      await Bun.sleep(300);
      expect(checks).toBe(afterBackOff); // no check while idle
      governor.wake();
      await Bun.sleep(500); // the first check is due in 10 ms; room for a loaded machine
      expect(checks).toBeGreaterThan(afterBackOff);
    } finally {
      governor.stop();
    }
  });
});
