/**
 * Worker thread running the delivery worker (worker.ts) of `mailgw serve`, so delivery (claims,
 * relay SMTP, result commits, fsyncs) uses a second core instead of sharing the event loop
 * with intake. It opens its own SQLite connection (same file, WAL) and its own relay pool.
 * Protocol (structured clone; see thread-protocol.ts):
 *   in:  init { config } once, then wake, reload-relay { relay }, count-sessions { counts }, stop
 *   out: ready (module loaded), started | start-failed { error }, logs { records, inFlight },
 *        stopped
 * Log records are filtered by LOG_LEVEL here and written by the main thread's logger, so the
 * lines are the same as with an in-thread worker (one per attempt, with the message id).
 * count-sessions: the SMTP session and refusal counters (serve/session-counters.ts) are committed here, not
 * on the event loop, where a write to the WAL waited as long as the disk did: behind a syncfs of
 * big messages on a slow disk (23 s), or until a frozen or hung file system came back, with no
 * SMTP greeting and no /healthz answer meanwhile. Counts a commit could not take are kept for the next.
 * Trusts: the Config the main thread validated. Failure: a start error is reported
 * (start-failed) and the main thread falls back to an in-thread worker; an uncaught exception
 * ends this thread and the main thread starts a new one (thread-restarts.ts).
 */
import type { Database } from "bun:sqlite";
import type { LogFields, Logger } from "../log/logger.ts";
import { addSessionCounts, bumpSessionCounts, emptySessionCounts, hasSessionCounts } from "../store/counters.ts";
import { openDatabase } from "../store/db.ts";
import { describeError } from "../errors.ts";
import { commitWithShortWaits } from "../spool/wal-sync.ts";
import type { ThreadLogRecord, ThreadReply, ThreadRequest } from "./thread-protocol.ts";
import { createDeliveryWorker, type DeliveryWorker } from "./worker.ts";

declare const self: Worker;

const LEVEL_RANK = { error: 0, warn: 1, info: 3, debug: 4 } as const;

let worker: DeliveryWorker | null = null;
let db: Database | null = null;
let pending: ThreadLogRecord[] = [];
let log: Logger | null = null;
/** Ended sessions and refusals not yet committed, and the time of the latest count. */
const sessionCounts = emptySessionCounts();
let sessionCountsAt = 0;
let flushScheduled = false;

function post(reply: ThreadReply): void {
  self.postMessage(reply);
}

function flushLogs(): void {
  flushScheduled = false;
  const records = pending;
  pending = [];
  post({ kind: "logs", records, inFlight: worker?.inFlight() ?? 0 });
}

/** Logger that batches records (one message per event-loop turn) for the main thread. */
function forwardingLogger(level: keyof typeof LEVEL_RANK): Logger {
  const max = LEVEL_RANK[level];
  const log = (l: ThreadLogRecord["level"]) => (msg: string, fields?: LogFields) => {
    if (LEVEL_RANK[l] > max) return;
    pending.push({ level: l, msg, fields: fields ?? {} });
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flushLogs);
    }
  };
  return { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") };
}

async function handle(req: ThreadRequest): Promise<void> {
  switch (req.kind) {
    case "init": {
      try {
        db = openDatabase(req.config.databasePath);
        // Every commit here is non-durable; spool files are unlinked only after `durable`
        // (a WAL fsync), so this only shortens how long the write lock is held.
        db.exec("PRAGMA synchronous = NORMAL");
        log = forwardingLogger(req.config.log.level);
        worker = createDeliveryWorker({ config: req.config, db, logger: log });
        await worker.start();
        post({ kind: "started" });
      } catch (err) {
        post({ kind: "start-failed", error: err instanceof Error ? err.message : String(err) });
      }
      return;
    }
    case "wake":
      worker?.wake();
      return;
    case "reload-relay":
      // Also posted while the init runs (thread-launch.ts onInit): handled after it, so the
      // worker must exist once init's synchronous part is done, before its first await.
      worker?.reloadRelay(req.relay);
      return;
    case "count-sessions":
      sessionCountsAt = req.at;
      addSessionCounts(sessionCounts, req.counts);
      commitSessionCounts();
      return;
    case "stop":
      await worker?.stop();
      commitSessionCounts();
      worker = null;
      db?.close();
      db = null;
      if (pending.length > 0) flushLogs();
      post({ kind: "stopped" });
      return;
  }
}

function commitSessionCounts(): void {
  const conn = db;
  if (conn === null || !hasSessionCounts(sessionCounts)) return;
  const counts = structuredClone(sessionCounts);
  try {
    commitWithShortWaits(conn, () => bumpSessionCounts(conn, sessionCountsAt, counts));
    addSessionCounts(sessionCounts, counts, -1);
  } catch (err) {
    log?.error("writing session counters failed; kept for the next try", { error: describeError(err) });
  }
}

self.onmessage = (event: MessageEvent<ThreadRequest>) => {
  void handle(event.data);
};

post({ kind: "ready" });
