/**
 * Spool access for other processes and stages (delivery worker, `mailgw queue`): read a
 * spooled message and release its spool file once nothing needs it.
 * Trusts: nothing about `id` (checked by `Spool.pathOf`). Failure: throws the file-system
 * error (a missing file is ENOENT); releasing a file still needed is a no-op.
 */
import type { Database } from "bun:sqlite";
import { spoolStillNeeded } from "../store/messages.ts";
import { Spool } from "./spool.ts";

/** The exact bytes accepted for message `id` (Received header included). */
export function readSpooled(dataDir: string, id: string): Promise<Uint8Array> {
  return new Spool(dataDir).read(id);
}

/**
 * Removes the spool file of `id` when its row is done and none of its deliveries is still
 * queued, deferred, held, delivering or failed. Returns whether the file was removed.
 * (A running serve's pipeline has its own `releaseSpool`, which also knows what it is
 * finishing right now; prefer that inside serve.)
 */
export async function releaseSpooled(db: Database, dataDir: string, id: string): Promise<boolean> {
  if (spoolStillNeeded(db, id)) return false;
  return new Spool(dataDir).remove(id);
}
