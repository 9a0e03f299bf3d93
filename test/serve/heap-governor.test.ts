import { describe, expect, test } from "bun:test";
import { edenGC, heapSize } from "bun:jsc";
import { startHeapGovernor } from "../../src/serve/heap-governor.ts";

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

  test("with the real heap: promoted garbage is collected and the heap shrinks back", () => {
    Bun.gc(true);
    const start = heapSize();
    const governor = startHeapGovernor({ checkEveryMs: 60_000, growthBytes: 4 * MB });
    try {
      // Objects that outlive young collections (as an SMTP session's do), then are dropped.
      let kept: object[][] = [];
      for (let round = 0; round < 100 && heapSize() < start + 6 * MB; round++) {
        kept.push(Array.from({ length: 10_000 }, (_, i) => ({ round, i, text: `session ${round}/${i}` })));
        edenGC();
      }
      expect(heapSize()).toBeGreaterThan(start + 4 * MB);
      kept = [];
      const grown = heapSize();
      expect(governor.check()).toBe(true);
      expect(heapSize()).toBeLessThan(grown - 4 * MB);
      expect(kept).toHaveLength(0);
    } finally {
      governor.stop();
    }
  });
});
