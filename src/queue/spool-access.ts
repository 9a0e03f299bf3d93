/**
 * How the delivery side reaches a message's stored bytes: read it for an attempt, release
 * it once its deliveries are final. One small seam so the worker and `mailgw queue` do not
 * depend on how the spool lays out its files.
 *
 * Trusts: message ids from the database (the Spool re-checks them before building a path).
 * Failure: `read` throws the file-system error (ENOENT = the file is gone); `release` removes
 * the file (`remove` too, its caller having checked) only when no delivery (failed ones included, `queue retry` needs them) and no
 * unfinished intake still needs it, and ignores a file already gone.
 */
import type { Database } from "bun:sqlite";
import { Spool } from "../spool/spool.ts";
import { spoolStillNeeded } from "../store/messages.ts";

export interface SpoolAccess {
  read(messageId: string): Promise<Uint8Array>;
  /** Removes the file if nothing needs it any more (checks the database first). */
  release(messageId: string): Promise<void>;
  /** Removes the file: the caller already decided, inside its own transaction, that nothing needs it. */
  remove(messageId: string): Promise<void>;
}

export function createSpoolAccess(db: Database, dataDir: string): SpoolAccess {
  const spool = new Spool(dataDir);
  return {
    read: (id) => spool.read(id),
    async release(id) {
      if (!spoolStillNeeded(db, id)) await spool.remove(id);
    },
    async remove(id) {
      await spool.remove(id);
    },
  };
}

export function isMissingFile(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === "ENOENT";
}
