/**
 * The rules runtime's status (runtime.ts) written to `meta` (rules.version, rules.loaded_at,
 * rules.last_error, rules.reloads_ok, rules.reloads_error) for the stats page and metrics, which
 * may run in another process. Separate because it is the runtime's only database write.
 *
 * Trusts: the status it is given. Failure: a write that fails is ignored (informational).
 */
import type { Database } from "bun:sqlite";
import { commitWhenFree } from "../spool/wal-sync.ts";
import type { RulesStatus } from "./runtime.ts";

const META_UPSERT = `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`;

/** Never waits for the write lock on the event loop (commitWhenFree); reloads run one at a time. */
export async function recordRulesStatus(db: Database | undefined, s: RulesStatus): Promise<void> {
  if (!db) return;
  try {
    await commitWhenFree(db, () => {
      const put = db.query(META_UPSERT);
      put.run("rules.file", s.file);
      put.run("rules.version", s.version);
      put.run("rules.loaded_at", s.loadedAt.toISOString());
      put.run("rules.last_error", s.lastError ?? "");
      put.run("rules.reloads_ok", String(s.reloads.ok));
      put.run("rules.reloads_error", String(s.reloads.error));
    });
  } catch {
    // Recording is informational; the rules in force do not depend on it.
  }
}
