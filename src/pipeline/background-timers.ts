/**
 * The pipeline's background timers: the minute sweep (held-back deliveries released, messages
 * left unfinished by a failed archive copy finished again) and the archive's retention pass.
 * Separate from the intake: they run off the message path, started once recovery is done and
 * stopped first at close (before the database closes under a pass).
 */
import type { Database } from "bun:sqlite";
import type { Config } from "../config/config.ts";
import { describeError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import type { Archive } from "../act/archive.ts";
import type { Finisher } from "../act/finish.ts";
import { sweepPending } from "../spool/recovery.ts";
import { startRetention, type RetentionTimer } from "../store/retention.ts";

/** How often messages left `spooled` by a failed archive copy are retried. */
export const SWEEP_INTERVAL_MS = 60_000;

export interface BackgroundTimersDeps {
  config: Config;
  db: Database;
  logger: Logger;
  finisher: Finisher;
  /** The oldest delivery creation time of a message still being stored (Intake.heldBackSince). */
  heldBackSince: () => number;
  archive: Archive;
  now: () => number;
}

export class BackgroundTimers {
  private retention: RetentionTimer | null = null;
  private sweepTimer: ReturnType<typeof setInterval> | null = null;

  constructor(private readonly deps: BackgroundTimersDeps) {}

  /** Releases held-back deliveries and finishes messages created or received over a minute ago. */
  sweep(): Promise<number> {
    const { db, finisher, now, heldBackSince } = this.deps;
    // A group whose write or sync has hung for over a minute keeps its deliveries held back:
    // released now, one would be claimed before its file exists, or sent for a 451.
    return sweepPending(db, finisher, now() - SWEEP_INTERVAL_MS, heldBackSince());
  }

  /** Starts the sweep and retention timers (once). */
  start(): void {
    if (this.sweepTimer) return;
    const { config, db, logger, archive, now } = this.deps;
    let sweeping = false;
    this.sweepTimer = setInterval(() => {
      if (sweeping) return;
      sweeping = true;
      this.sweep()
        .catch((err: unknown) => logger.error("retrying unfinished messages failed", { error: describeError(err) }))
        .finally(() => (sweeping = false));
    }, SWEEP_INTERVAL_MS);
    this.sweepTimer.unref();
    this.retention = startRetention({
      db, dataDir: config.dataDir, maxAgeDays: config.archiveMaxAgeDays, logger, now,
      onPruned: () => archive.forgetDays(),
    });
  }

  async stop(): Promise<void> {
    await this.retention?.stop(); // before the database closes under a pass
    if (this.sweepTimer) clearInterval(this.sweepTimer);
  }
}
