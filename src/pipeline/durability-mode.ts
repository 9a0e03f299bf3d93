/**
 * How accepted messages are made durable: by the spool writer thread (group syncfs, the
 * intake's rows committed on its own connection, archive-only messages written straight into
 * the archive) when it starts, else by the event loop, file by file. Owns the writer thread and
 * the fall-back when it dies. Separate from the intake path: it is decided once at start-up and
 * changed only by that death, while each message only reads `directArchive`.
 */
import type { Database } from "bun:sqlite";
import { mkdirSync, statSync } from "node:fs";
import { dirname } from "node:path";
import type { Logger } from "../log/logger.ts";
import type { Archive } from "../act/archive.ts";
import type { Intake } from "../act/intake.ts";
import type { Spool } from "../spool/spool.ts";
import { SpoolFlusher } from "../spool/spool-flusher.ts";
import type { WalSync } from "../spool/wal-sync.ts";

export interface DurabilityModeDeps {
  db: Database;
  spool: Spool;
  wal: WalSync;
  intake: Intake;
  archive: Archive;
  logger: Logger;
}

export class DurabilityMode {
  /**
   * Archive-only messages go straight to the archive (writer thread, archive on the spool's file
   * system). Set by start() and by the writer thread's death only.
   */
  directArchive = false;
  private flusher: SpoolFlusher | null = null;

  constructor(private readonly deps: DurabilityModeDeps) {}

  /** Starts the spool writer thread and hands it to the intake (at recover(), before SMTP listens). */
  async start(): Promise<void> {
    const { db, spool, wal, intake, archive, logger } = this.deps;
    const walToo = wal.file !== null && sameFileSystem(dirname(wal.file), spool.dir);
    // The writer thread commits the intake's rows on its own connection (a WAL database only).
    const database = wal.file !== null ? { path: db.filename, walFsync: walToo ? null : wal.file } : undefined;
    const started = await SpoolFlusher.start(spool.dir, database);
    if (started.flusher) {
      const spoolFlusher = (this.flusher = started.flusher);
      intake.useFlusher(spoolFlusher, { coversWal: walToo });
      if (spoolFlusher.rowsUnavailable !== null) logger.warn("intake rows committed on the event loop", { reason: spoolFlusher.rowsUnavailable });
      mkdirSync(archive.root, { recursive: true });
      this.directArchive = sameFileSystem(archive.root, spool.dir);
      // The finisher's done marks ride on the intake's next group syncfs (see afterSync).
      if (walToo) wal.useSyncer(() => spoolFlusher.afterSync());
      logger.info("spool files made durable by group syncfs", { wal_by_syncfs: walToo, archive_direct: this.directArchive });
      spoolFlusher.onDeath((reason) => {
        // Messages in its hands get 451; from now on every file is fsynced by the intake itself.
        logger.error("spool writer thread died, spool files are fsynced one by one from now on", { reason });
        this.flusher = null;
        this.directArchive = false;
        intake.useFlusher(null, { coversWal: false });
        wal.useSyncer(null);
      });
    }
    else logger.info("spool files fsynced one by one (no syncfs)", { reason: started.reason });
  }

  async close(): Promise<void> {
    await this.flusher?.close();
  }
}

function sameFileSystem(a: string, b: string): boolean {
  try {
    return statSync(a).dev === statSync(b).dev;
  } catch {
    return false;
  }
}
