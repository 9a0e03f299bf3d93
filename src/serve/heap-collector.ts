/**
 * The heap governor's decision (heap-governor.ts): at each check, read heap + buffers and make a
 * young collection, a full one or none, by their growth since the last; and count the checks in
 * a row without growth, which let the governor's timer back off. Separate from the timer, which
 * only says when a check runs; `check()` is also called straight after a big message.
 *
 * Trusts: nothing external. Failure: none (a failed memory read falls back to the heap walk).
 */
import { edenGC, heapStats } from "bun:jsc";
import type { HeapGovernorOptions } from "./heap-governor.ts";

/** Growth between two checks below which the heap counts as quiet (timers allocate a little). */
export const QUIET_GROWTH_BYTES = 256 * 1024;

export interface HeapCollector {
  /** One check; true when it made a full collection. */
  check(): boolean;
  /** Full collections so far. */
  collections(): number;
  youngCollections(): number;
  /** The heap has not grown for `quietChecks` checks in a row. */
  quiet(): boolean;
  /** Work is arriving: the heap no longer counts as quiet. */
  stir(): void;
}

/**
 * The heap's size as the governor reads it: `process.memoryUsage().heapUsed`, in constant time.
 * Measured on Bun 1.4 (2026-11-24): it moves only when JSC collects (eden collections included),
 * as bun:jsc's `heapSize()` does; between two collections both stay put while the program
 * allocates (in a process with a 400 MB heap, 40 MB of allocation went by without a collection
 * and without a change). So the governor acts on what JSC's own collections, frequent at
 * serve's 20–40 MB heap, leave behind, not on allocation as it happens.
 * bun:jsc's `heapSize()` walks every block of the heap instead: ~55 µs at 23 MB, 0.6–0.9 ms at
 * 140 MB, measured; at 20 checks a second under load that was ~6% of the event loop's samples
 * at 100 sessions (`bun --cpu-prof-md`). A test checks the two agree.
 * Bun's `process.memoryUsage()` also opens /proc/self/statm for the RSS and throws when the
 * process is out of file descriptors (a connection flood under `ulimit -n`): thrown from the
 * governor's timer, that ended serve. Then the heap walk is read instead, until descriptors free up.
 */
export function heapUsed(): number {
  return memoryNow().heap;
}

/**
 * The heap and the bytes held by ArrayBuffers, from one read. Socket chunks and message bytes
 * live in ArrayBuffers, which `heapUsed` does not count. A chunk that outlives a young collection
 * (it waits a few ms for its file write) is then freed only by a full one; reading `heapUsed`
 * alone, the governor never saw them: at 100 sessions of 100 KB messages they reached 40 MB
 * between collections (measured: peak RSS 157–171 MB, 132–146 MB when they are counted).
 */
export function memoryNow(): { heap: number; buffers: number } {
  try {
    const m = process.memoryUsage();
    return { heap: m.heapUsed, buffers: m.arrayBuffers };
  } catch {
    return { heap: heapStats().heapSize, buffers: 0 };
  }
}

export function createHeapCollector(opts: HeapGovernorOptions): HeapCollector {
  const collect = opts.collect ?? ((): void => Bun.gc(true));
  const collectYoung = opts.collectYoung ?? ((): void => void edenGC());
  const youngGrowth = opts.youngGrowthBytes ?? 0;
  const bufferGrowth = opts.bufferGrowthBytes ?? Infinity;
  const read = memoryReader(opts);
  /** After the last full collection: the heap and heap + buffers; `base`: heap + buffers after the last collection of either kind. */
  let now = read();
  let floor = now.heap;
  let floorTotal = now.total;
  let base = now.total;
  let collections = 0;
  let youngCollections = 0;
  const quietChecks = opts.quietChecks ?? 20;
  /** Heap + buffers at the end of the last check, and checks in a row since they last grew. */
  let lastTotal = now.total;
  let quiet = 0;
  const check = (): boolean => {
    now = read();
    quiet = now.total - lastTotal < QUIET_GROWTH_BYTES ? quiet + 1 : 0;
    lastTotal = now.total;
    // JSC's own collection shrank the heap: measure growth from there.
    base = Math.min(base, now.total);
    if (youngGrowth > 0 && now.total - base >= youngGrowth) {
      collectYoung();
      youngCollections++;
      now = read();
      lastTotal = base = now.total;
    }
    floor = Math.min(floor, now.heap);
    floorTotal = Math.min(floorTotal, now.total);
    if (now.heap - floor < opts.growthBytes && now.total - floorTotal < bufferGrowth) return false;
    collect();
    collections++;
    now = read();
    floor = now.heap;
    lastTotal = floorTotal = base = now.total;
    return true;
  };
  return {
    check,
    collections: () => collections,
    youngCollections: () => youngCollections,
    quiet: () => quiet >= quietChecks,
    stir() {
      quiet = 0;
    },
  };
}

/** Heap, and heap + buffers, as a check reads them: the real ones, or those a test injects. */
function memoryReader({ heapSize, bufferSize }: HeapGovernorOptions): () => { heap: number; total: number } {
  return () => {
    if (heapSize === undefined && bufferSize === undefined) {
      const m = memoryNow();
      return { heap: m.heap, total: m.heap + m.buffers };
    }
    const heap = heapSize ? heapSize() : heapUsed();
    return { heap, total: heap + (bufferSize ? bufferSize() : 0) };
  };
}
