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
 * The reads and the decision at each check are in heap-collector.ts; this file runs the checks.
 *
 * Trusts: nothing external. Failure: none; `heapSize`, `bufferSize` and the collections are injectable for tests.
 */
import { createHeapCollector } from "./heap-collector.ts";

export { heapUsed, memoryNow, QUIET_GROWTH_BYTES } from "./heap-collector.ts";

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

export function startHeapGovernor(opts: HeapGovernorOptions): HeapGovernor {
  const collector = createHeapCollector(opts);
  const check = collector.check;
  const idleEveryMs = opts.idleCheckEveryMs ?? opts.checkEveryMs;
  const period = (): number => (collector.quiet() ? idleEveryMs : opts.checkEveryMs);
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
    collections: collector.collections,
    youngCollections: collector.youngCollections,
    wake() {
      const wasIdle = period() !== opts.checkEveryMs;
      collector.stir();
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
