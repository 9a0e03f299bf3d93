/**
 * Archive retention (ARCHIVE_MAX_AGE_DAYS > 0): deletes archive copies of messages received
 * more than that many days ago and clears their `archive_path`, then deletes those messages'
 * rows (message, deliveries, attempts: sender, recipients and subject should not outlive the
 * copy; the stats come from daily_counters) unless a delivery still needs them: one not
 * delivered yet, or failed and waiting for `mailgw queue retry` (only its archive copy goes).
 * Day directories wholly older than the cutoff are then removed with whatever they still hold
 * (copies without a row, leftover `.tmp` files); other names under archive/ are left alone.
 * Spool files are never touched.
 *
 * Runs in the background (once at start, then hourly), in pages with a yield to the event
 * loop between them and async file I/O only, so a large archive never stalls SMTP sessions.
 * A first pass over a year of mail takes minutes: stop() ends it between two pages (what it
 * did is logged, the next start goes on), before serve closes the database under it.
 * Trusts: `archive_path` values written by the pipeline, still checked to stay inside
 * `DATA_DIR/archive/`. Failure: logged; the next run tries again.
 */
import type { Database } from "bun:sqlite";
import { readdir, rm, unlink } from "node:fs/promises";
import { join, normalize, sep } from "node:path";
import { describeError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import { ignoreMissing } from "../spool/spool.ts";
import { dayKey } from "./db.ts";
import { commitWhenFree } from "../spool/wal-sync.ts";
import { archivedBefore, clearArchivePath, deleteMessages, expiredMessages } from "./messages.ts";

/** Rows handled per page before yielding to the event loop. */
const RETENTION_PAGE_ROWS = 500;
/** How often retention runs while serving. */
export const RETENTION_INTERVAL_MS = 60 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;
const DAY_DIR_PATTERN = /^\d{4}-\d{2}-\d{2}$/;

export interface RetentionReport {
  filesDeleted: number;
  rowsCleared: number;
  /** Message rows deleted (with their deliveries and attempts). */
  rowsDeleted: number;
  dayDirsRemoved: number;
  /** The pass was stopped before the end (serve stopping); the next one goes on. */
  stopped: boolean;
}

/** `signal`: aborted, the pass ends before its next page (report.stopped). */
export async function pruneArchive(db: Database, dataDir: string, maxAgeDays: number, nowMs: number, signal?: AbortSignal): Promise<RetentionReport> {
  const report: RetentionReport = { filesDeleted: 0, rowsCleared: 0, rowsDeleted: 0, dayDirsRemoved: 0, stopped: false };
  if (!(maxAgeDays > 0)) return report;
  const cutoffMs = nowMs - maxAgeDays * DAY_MS;
  const stopped = (): boolean => (report.stopped = signal?.aborted === true);
  // Where the last page ended: the next one starts there (rows at that same time included).
  let fromMs = 0;
  for (;;) {
    if (stopped()) return report;
    const rows = archivedBefore(db, cutoffMs, RETENTION_PAGE_ROWS, fromMs);
    if (rows.length === 0) break;
    fromMs = rows.at(-1)?.receivedAt ?? fromMs;
    for (const r of rows) {
      const rel = normalize(r.archivePath);
      if (rel.startsWith(`archive${sep}`) && !rel.split(sep).includes("..")) {
        await unlink(join(dataDir, rel)).then(() => report.filesDeleted++, ignoreMissing);
      }
    }
    // No fsync needed (a lost clear is redone by the next pass); never waits on the event loop.
    await commitWhenFree(db, () => {
      for (const r of rows) clearArchivePath(db, r.id);
    });
    report.rowsCleared += rows.length;
    await new Promise((resolve) => setImmediate(resolve));
  }
  fromMs = 0;
  for (;;) {
    if (stopped()) return report;
    const expired = expiredMessages(db, cutoffMs, RETENTION_PAGE_ROWS, fromMs);
    if (expired.length === 0) break;
    fromMs = expired.at(-1)?.receivedAt ?? fromMs;
    const ids = expired.map((r) => r.id);
    await commitWhenFree(db, () => deleteMessages(db, ids));
    report.rowsDeleted += ids.length;
    await new Promise((resolve) => setImmediate(resolve));
  }
  const root = join(dataDir, "archive");
  const days = await readdir(root).catch((err: unknown) => (ignoreMissing(err), [] as string[]));
  for (const day of days) {
    if (stopped()) return report;
    const dayStart = dayDirStart(day);
    if (dayStart === null || !(dayStart + DAY_MS <= cutoffMs)) continue;
    await rm(join(root, day), { recursive: true, force: true });
    report.dayDirsRemoved++;
  }
  return report;
}

/**
 * Start (unix ms) of the UTC day a directory is named after; null for a name that is no day.
 * Date.parse rolls an impossible day over ("2025-02-30" is March 2): such a directory is not
 * one the archive made, and was removed with whatever someone had put in it.
 */
function dayDirStart(name: string): number | null {
  if (!DAY_DIR_PATTERN.test(name)) return null;
  const ms = Date.parse(`${name}T00:00:00Z`);
  return Number.isFinite(ms) && dayKey(ms) === name ? ms : null;
}

export interface RetentionTimer {
  /** Runs one pass now (also what the timer does); never throws. */
  runNow(): Promise<RetentionReport | null>;
  /** No more passes; resolves once the running one (if any) has ended, between two pages. */
  stop(): Promise<void>;
}

export function startRetention(opts: {
  db: Database;
  dataDir: string;
  maxAgeDays: number;
  logger: Logger;
  intervalMs?: number;
  now?: () => number;
  /** Called after a pass that removed something (e.g. to forget cached directories). */
  onPruned?: () => void;
}): RetentionTimer {
  const now = opts.now ?? Date.now;
  let running: Promise<RetentionReport | null> | null = null;
  const stopping = new AbortController();
  const runNow = (): Promise<RetentionReport | null> => {
    if (stopping.signal.aborted) return Promise.resolve(null);
    running ??= pruneArchive(opts.db, opts.dataDir, opts.maxAgeDays, now(), stopping.signal)
      .then((report) => {
        if (report.filesDeleted + report.rowsCleared + report.rowsDeleted + report.dayDirsRemoved > 0) {
          opts.onPruned?.();
          opts.logger.info("archive retention pruned", {
            files_deleted: report.filesDeleted,
            rows_cleared: report.rowsCleared,
            rows_deleted: report.rowsDeleted,
            day_dirs_removed: report.dayDirsRemoved,
            max_age_days: opts.maxAgeDays,
            ...(report.stopped ? { stopped: true, hint: "stopped before the end: the next start goes on with the rest" } : {}),
          });
        }
        return report;
      })
      .catch((err: unknown) => {
        opts.logger.error("archive retention failed, will retry", { error: describeError(err) });
        return null;
      })
      .finally(() => {
        running = null;
      });
    return running;
  };
  if (!(opts.maxAgeDays > 0)) return { runNow, stop: () => Promise.resolve() };
  const timer = setInterval(() => void runNow(), opts.intervalMs ?? RETENTION_INTERVAL_MS);
  timer.unref();
  void runNow();
  return {
    runNow,
    async stop() {
      clearInterval(timer);
      stopping.abort();
      await running;
    },
  };
}
