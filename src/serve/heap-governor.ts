/**
 * Keeps a thread's JavaScript heap near its live size under connection churn.
 *
 * Why: an SMTP session lives ~100 ms (smtp-server's early-talker wait alone), long enough for
 * JavaScriptCore's young-generation collections to promote its objects (socket, connection,
 * parser, streams, timers) to the old generation, which JSC collects only once the heap has
 * grown ~3× past its live size. Measured at 100 sessions of one message per connection: the
 * heap climbs 12 → 37 MB between full collections and the process peaks at 153–159 MB RSS,
 * all of it garbage. A full collection when the heap has grown by `growthBytes` since the last
 * one (ours or JSC's) keeps the peak at live size + growthBytes, for one ~15–25 ms pause every
 * few seconds at that load and none when idle.
 * Big messages add a second kind of garbage: socket chunks (64 KB each, ~200 MB/s at 100
 * sessions of 100 KB messages), held in ArrayBuffers, which the heap size does not count. JSC
 * starts its own collection only after tens of MB, so they piled up to 40–50 MB. The governor
 * therefore reads heap + buffers: a young collection (~1 ms) when they have grown by
 * `youngGrowthBytes` since the last collection of either kind frees the chunks that already
 * died; a full one follows when the heap is `growthBytes` over its floor, or heap + buffers
 * `bufferGrowthBytes` over theirs (chunks that waited for their file write through a young
 * collection were promoted, and only a full one frees them). Measured at 100 sessions × ~10
 * messages of 100 KB, with checks every 20 ms under load (at 50 ms, 20 MB piled up between two):
 * peak RSS 133–140 MB (VmHWM 138–149) instead of 166–168 (176–184), for about three times the
 * full collections and ~10% more CPU at that workload; none of it at 4 KB. The pipeline also
 * calls `check()` right after an 8 MB+ message, before its parse.
 *
 * Idle, the checks back off (`idleCheckEveryMs`) once the heap has stopped growing for
 * `quietChecks` checks: every check reads the heap size and wakes the thread, which was half of
 * an idle serve's CPU (measured: 350 → 155 ms per 30 s, 59 → 35 wake-ups/s, when a read still
 * walked the heap). `wake()` (each
 * message) brings the fast checks back at once, before a burst can pile up garbage.
 *
 * Trusts: nothing external. Failure: none; `heapSize`, `bufferSize` and the collections are injectable for tests.
 */
import { edenGC, heapStats } from "bun:jsc";

export interface HeapGovernorOptions {
  /** How often the heap size is read (see heapUsed: ~10 µs whatever the heap's size). */
  checkEveryMs: number;
  /** Growth over the size after the last full collection that triggers the next one. */
  growthBytes: number;
  /** Growth of heap + buffers over the size after the last collection that triggers a young one (0: none). */
  youngGrowthBytes?: number;
  /**
   * Growth of heap + buffers over their size after the last full collection that triggers the
   * next one even when the heap alone has not grown by `growthBytes` (default: never).
   */
  bufferGrowthBytes?: number;
  heapSize?: () => number;
  /** Bytes held by ArrayBuffers, outside the heap size (with heapSize given and this not: 0). */
  bufferSize?: () => number;
  /** A synchronous full collection (Bun.gc(true): JSC, then mimalloc returns freed pages). */
  collect?: () => void;
  /** A synchronous young-generation collection (JSC's eden collection). */
  collectYoung?: () => void;
  /** Check period once the heap is quiet (default checkEveryMs: no back-off). */
  idleCheckEveryMs?: number;
  /** Checks in a row with less than QUIET_GROWTH_BYTES of growth that make the heap quiet. */
  quietChecks?: number;
}

/** Growth between two checks below which the heap counts as quiet (timers allocate a little). */
export const QUIET_GROWTH_BYTES = 256 * 1024;

export interface HeapGovernor {
  /** One check, as the timer runs it; true when it made a full collection. */
  check(): boolean;
  /** Full collections so far. */
  collections(): number;
  youngCollections(): number;
  /** Work is arriving (a message): back to checking every checkEveryMs if it had backed off. */
  wake(): void;
  /** The period of the next check, ms (tests). */
  period(): number;
  stop(): void;
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

export function startHeapGovernor(opts: HeapGovernorOptions): HeapGovernor {
  const collect = opts.collect ?? ((): void => Bun.gc(true));
  const collectYoung = opts.collectYoung ?? ((): void => void edenGC());
  const youngGrowth = opts.youngGrowthBytes ?? 0;
  const bufferGrowth = opts.bufferGrowthBytes ?? Infinity;
  const { heapSize, bufferSize } = opts;
  const read = (): { heap: number; total: number } => {
    if (heapSize === undefined && bufferSize === undefined) {
      const m = memoryNow();
      return { heap: m.heap, total: m.heap + m.buffers };
    }
    const heap = heapSize ? heapSize() : heapUsed();
    return { heap, total: heap + (bufferSize ? bufferSize() : 0) };
  };
  /** After the last full collection: the heap and heap + buffers; `base`: heap + buffers after the last collection of either kind. */
  let now = read();
  let floor = now.heap;
  let floorTotal = now.total;
  let base = now.total;
  let collections = 0;
  let youngCollections = 0;
  const idleEveryMs = opts.idleCheckEveryMs ?? opts.checkEveryMs;
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
  const period = (): number => (quiet >= quietChecks ? idleEveryMs : opts.checkEveryMs);
  let timer: ReturnType<typeof setTimeout> | null = null;
  const schedule = (): void => {
    timer = setTimeout(() => {
      check();
      schedule();
    }, period());
    timer.unref();
  };
  schedule();
  return {
    check,
    collections: () => collections,
    youngCollections: () => youngCollections,
    wake() {
      const wasIdle = period() !== opts.checkEveryMs;
      quiet = 0;
      if (wasIdle && timer !== null) {
        clearTimeout(timer);
        schedule();
      }
    },
    period,
    stop() {
      if (timer !== null) clearTimeout(timer);
      timer = null;
    },
  };
}
