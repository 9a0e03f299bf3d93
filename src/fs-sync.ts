/**
 * fsync by path: opens the file or directory anew, syncs it, closes it. Used for the spool's
 * and archive's directories (making renames durable), the SQLite WAL, and atomic rule-file
 * writes. Throws what the file system throws; callers decide whether that is a 451.
 */
import { open } from "node:fs/promises";

export async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
