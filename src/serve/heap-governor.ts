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
 * Big messages add a second kind of garbage: socket chunks (64 KB each, ~140 MB/s at 100
 * sessions of 100 KB messages) that die within milliseconds, but in a server-sized heap JSC
 * starts its own young collection only after tens of MB, so they pile up to 50+ MB (measured:
 * peak RSS 145–170 MB). A young collection when the heap has grown by `youngGrowthBytes` since the last
 * collection of either kind frees them for ~1 ms (no measurable CPU per message at 4 KB or
 * 100 KB); a full one follows only if the heap is still `growthBytes` over its floor. The
 * pipeline also calls `check()` right after an 8 MB+ message, before its parse.
 *
 * Idle, the checks back off (`idleCheckEveryMs`) once the heap has stopped growing for
 * `quietChecks` checks: every check reads the heap size and wakes the thread, which was half of
 * an idle serve's CPU (measured: 350 → 155 ms per 30 s, 59 → 35 wake-ups/s, when a read still
 * walked the heap). `wake()` (each
 * message) brings the fast checks back at once, before a burst can pile up garbage.
 *
 * Trusts: nothing external. Failure: none; `heapSize` and `collect` are injectable for tests.
 */
import { edenGC, heapStats } from "bun:jsc";

export interface HeapGovernorOptions {
  /** How often the heap size is read (see heapUsed: ~10 µs whatever the heap's size). */
  checkEveryMs: number;
  /** Growth over the size after the last full collection that triggers the next one. */
  growthBytes: number;
  /** Growth over the size after the last collection that triggers a young one (0: none). */
  youngGrowthBytes?: number;
  heapSize?: () => number;
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
 * The heap's size as the governor reads it: `process.memoryUsage().heapUsed`, which Bun derives
 * from the size after JSC's last collection plus what was allocated since, in constant time.
 * bun:jsc's `heapSize()` walks every block of the heap instead: ~55 µs at 23 MB, 0.6–0.9 ms at
 * 140 MB, measured; at 20 checks a second under load that was ~6% of the event loop's samples
 * at 100 sessions (`bun --cpu-prof-md`). Both grow with allocation and drop with a collection.
 * Bun's `process.memoryUsage()` also opens /proc/self/statm for the RSS and throws when the
 * process is out of file descriptors (a connection flood under `ulimit -n`): thrown from the
 * governor's timer, that ended serve. Then the heap walk is read instead, until descriptors free up.
 */
export function heapUsed(): number {
  try {
    return process.memoryUsage().heapUsed;
  } catch {
    return heapStats().heapSize;
  }
}

export function startHeapGovernor(opts: HeapGovernorOptions): HeapGovernor {
  const heapSize = opts.heapSize ?? heapUsed;
  const collect = opts.collect ?? ((): void => Bun.gc(true));
  const collectYoung = opts.collectYoung ?? ((): void => void edenGC());
  const youngGrowth = opts.youngGrowthBytes ?? 0;
  /** Size after the last full collection; `base`: after the last collection of either kind. */
  let floor = heapSize();
  let base = floor;
  let collections = 0;
  let youngCollections = 0;
  const idleEveryMs = opts.idleCheckEveryMs ?? opts.checkEveryMs;
  const quietChecks = opts.quietChecks ?? 20;
  /** Size at the end of the last check, and checks in a row since the heap last grew. */
  let lastSize = floor;
  let quiet = 0;
  const check = (): boolean => {
    let size = heapSize();
    quiet = size - lastSize < QUIET_GROWTH_BYTES ? quiet + 1 : 0;
    lastSize = size;
    // JSC's own collection shrank the heap: measure growth from there.
    base = Math.min(base, size);
    if (youngGrowth > 0 && size - base >= youngGrowth) {
      collectYoung();
      youngCollections++;
      size = lastSize = base = heapSize();
    }
    floor = Math.min(floor, size);
    if (size - floor < opts.growthBytes) return false;
    collect();
    collections++;
    lastSize = floor = base = heapSize();
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
