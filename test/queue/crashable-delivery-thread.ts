/**
 * The real delivery thread (src/queue/delivery-thread.ts) plus two ways to disturb it for
 * test/queue/threaded-worker.test.ts, each read from a marker file at init and removed then (so
 * only one thread is disturbed; the next one runs normally):
 * - `<DATA_DIR>/crash-thread`: the thread throws an uncaught error that many ms later (default 200).
 * - `<DATA_DIR>/slow-start`: the thread blocks that many ms right after its init, so its worker
 *   runs (and has claimed what is due) while its `started` has not reached the main thread yet.
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import "../../src/queue/delivery-thread.ts";
import type { ThreadRequest } from "../../src/queue/thread-protocol.ts";

declare const self: Worker;

/** The number in the marker file `name` of the data dir (removed), or null when there is none. */
function takeMarker(dataDir: string, name: string, fallback: number): number | null {
  const marker = join(dataDir, name);
  if (!existsSync(marker)) return null;
  const ms = Number(readFileSync(marker, "utf8").trim() || fallback);
  rmSync(marker);
  return ms;
}

const handleRequest = self.onmessage;
self.onmessage = (event: MessageEvent<ThreadRequest>) => {
  handleRequest?.call(self, event);
  if (event.data.kind !== "init") return;
  // Blocking here, before the init's `started` (posted once this handler returns), holds it back.
  const slowMs = takeMarker(event.data.config.dataDir, "slow-start", 1000);
  if (slowMs !== null) Bun.sleepSync(slowMs);
  const crashMs = takeMarker(event.data.config.dataDir, "crash-thread", 200);
  if (crashMs !== null) {
    setTimeout(() => {
      throw new Error("delivery thread crash (test)");
    }, crashMs);
  }
};
