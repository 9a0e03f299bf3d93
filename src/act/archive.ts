/**
 * The archive action: `DATA_DIR/archive/YYYY-MM-DD/<id>.eml` (UTC day the message was
 * received), the exact bytes of the spool file.
 *
 * How: a hard link from the already-fsynced spool file (no second copy of the bytes), or,
 * where links are not possible (another file system, a file system without links), a copy
 * through `<id>.eml.tmp` → fsync → rename. The day directory is fsynced once per batch, so
 * the entry is durable before the caller marks the message done.
 * Idempotent: the path depends only on id and receive time; an existing final file is
 * complete (it only ever appears by link or rename), so finding it means "already archived".
 * Failure: per message, the error is returned; nothing partial stays under the final name.
 */
import { copyFile, link, mkdir, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { dayKey } from "../store/db.ts";
import { isMessageId } from "../spool/ids.ts";
import { fsyncPath } from "../fs-sync.ts";

export interface ArchiveItem {
  id: string;
  receivedAt: number;
  /** Absolute path of the durable source (the spool file). */
  source: string;
}

/** null on success, else the error. */
export type ArchiveResult = { archivePath: string; error: null } | { archivePath: null; error: Error };

/** Path of a message's archive copy relative to DATA_DIR (what `messages.archive_path` stores). */
export function archiveRelativePath(id: string, receivedAt: number): string {
  if (!isMessageId(id)) throw new Error(`invalid message id ${JSON.stringify(id)}`);
  return join("archive", dayKey(receivedAt), `${id}.eml`);
}

/** Errors after which a hard link cannot work here, so the copy path is used. */
const LINK_UNSUPPORTED = new Set(["EXDEV", "EPERM", "ENOTSUP", "EOPNOTSUPP", "EMLINK", "ENOSYS"]);

export class Archive {
  /** Day directories known to exist (and whose creation was fsynced). */
  private readonly knownDays = new Set<string>();

  constructor(readonly dataDir: string) {}

  get root(): string {
    return join(this.dataDir, "archive");
  }

  /** Archives every item, then fsyncs each touched day directory once. */
  async archiveBatch(items: readonly ArchiveItem[]): Promise<ArchiveResult[]> {
    const results = await Promise.all(items.map((it) => this.archiveOne(it)));
    const dirs = new Set<string>();
    items.forEach((it, i) => {
      if (results[i]?.error === null) dirs.add(join(this.dataDir, "archive", dayKey(it.receivedAt)));
    });
    const dirErrors = new Map<string, Error>();
    await Promise.all(
      [...dirs].map((d) => fsyncPath(d).catch((err: unknown) => void dirErrors.set(d, asError(err)))),
    );
    if (dirErrors.size === 0) return results;
    return results.map((r, i) => {
      const it = items[i];
      const err = it ? dirErrors.get(join(this.dataDir, "archive", dayKey(it.receivedAt))) : undefined;
      return err ? { archivePath: null, error: err } : r;
    }) as ArchiveResult[];
  }

  private async archiveOne(it: ArchiveItem): Promise<ArchiveResult> {
    try {
      const rel = archiveRelativePath(it.id, it.receivedAt);
      const day = dayKey(it.receivedAt);
      await this.ensureDay(day);
      const final = join(this.dataDir, rel);
      try {
        await link(it.source, final).catch(async (err: unknown) => {
          // The day directory known to exist was removed since (moved away by an admin's script,
          // the archive cleared): made again, once. Cached, every retry failed ENOENT until a restart.
          if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
          this.knownDays.delete(day);
          await this.ensureDay(day);
          await link(it.source, final);
        });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? "";
        if (code === "EEXIST") return { archivePath: rel, error: null };
        if (!LINK_UNSUPPORTED.has(code)) throw err;
        await copyDurably(it.source, final);
      }
      return { archivePath: rel, error: null };
    } catch (err) {
      return { archivePath: null, error: asError(err) };
    }
  }

  private async ensureDay(day: string): Promise<void> {
    if (this.knownDays.has(day)) return;
    const created = await mkdir(join(this.root, day), { recursive: true });
    if (created !== undefined) {
      await fsyncPath(this.root);
      await fsyncPath(this.dataDir);
    }
    this.knownDays.add(day);
  }

  /** Forget cached day directories (after retention removed some). */
  forgetDays(): void {
    this.knownDays.clear();
  }
}

async function copyDurably(source: string, final: string): Promise<void> {
  const tmp = `${final}.tmp`;
  try {
    await copyFile(source, tmp);
    await fsyncPath(tmp);
    await rename(tmp, final);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
