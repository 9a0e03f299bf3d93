/**
 * Whether the database takes a write again, after a received message's commit failed (disk full,
 * read-only file, a lock held past busy_timeout by a `sqlite3` shell or a backup). /healthz said
 * 503 from such a failure until the next message was stored; a load balancer or an orchestrator
 * that stops sending mail to an unhealthy gateway then kept it "unhealthy" for good. So while a
 * failure is on record, each health check tries one small write of its own (a row in `meta`,
 * without an fsync: nothing depends on it) and clears the failure when it goes through.
 * Trusts: nothing. Failure: never throws; the write's error becomes the failure reported.
 */
import type { Database } from "bun:sqlite";
import { describeError } from "../errors.ts";
import { tryCommitWithoutWaiting } from "../spool/wal-sync.ts";

const PROBE_KEY = "write_probe";
/** How long a probe waits for a write lock held elsewhere (the health check must answer fast). */
const PROBE_LOCK_WAIT_MS = 500;
const PROBE_RETRY_MS = 10;

/**
 * `failure` (the last commit's, or null) as it stands now: null when the probe write went
 * through (`recovered` is called first), else why the database still refuses writes.
 */
export async function recheckWriteFailure(db: Database, failure: string | null, recovered: () => void): Promise<string | null> {
  if (failure === null) return null;
  const write = (): void => void db.query("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)").run(PROBE_KEY, String(Date.now()));
  const deadline = performance.now() + PROBE_LOCK_WAIT_MS;
  try {
    while (!tryCommitWithoutWaiting(db, write)) {
      if (performance.now() >= deadline) return `${failure} (the database is still locked by another connection)`;
      await Bun.sleep(PROBE_RETRY_MS);
    }
  } catch (err) {
    return describeError(err);
  }
  recovered();
  return null;
}
