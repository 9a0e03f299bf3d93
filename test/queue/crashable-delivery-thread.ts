/**
 * The real delivery thread (src/queue/delivery-thread.ts) plus one way to kill it for
 * test/queue/threaded-worker.test.ts: when `<DATA_DIR>/crash-thread` exists at init, the file
 * is removed and the thread throws an uncaught error CRASH_AFTER_MS later (so only the first
 * thread crashes; its replacement runs normally).
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import "../../src/queue/delivery-thread.ts";
import type { ThreadRequest } from "../../src/queue/thread-protocol.ts";

declare const self: Worker;

self.addEventListener("message", (event: MessageEvent<ThreadRequest>) => {
  if (event.data.kind !== "init") return;
  const marker = join(event.data.config.dataDir, "crash-thread");
  if (!existsSync(marker)) return;
  const afterMs = Number(readFileSync(marker, "utf8").trim() || "200");
  rmSync(marker);
  setTimeout(() => {
    throw new Error("delivery thread crash (test)");
  }, afterMs);
});
