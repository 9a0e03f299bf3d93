/**
 * Before recovery: the directories every accepted message is written into must be writable by
 * the user serve runs as. A data dir first created by root (a manual `sudo mailgw serve`, a
 * restore copied as root) and then given to the service user with a `chown` without `-R` left
 * `spool/` and `archive/` root's: serve started, logged "started", /healthz said ok, and every
 * message was answered 451 (EACCES on `spool/<id>.tmp` or the archive's day directory), forever.
 * SQLite's files have their own check (store/db.ts); this covers the rest of DATA_DIR.
 *
 * A read-only file system (a `mount -o ro`, an ext4 remounted read-only after an error, systemd's
 * ProtectSystem=strict outside ReadWritePaths) did the same: access(2) says EROFS there, not
 * EACCES, and the lock file, left by an earlier run, is opened read-only (data-dir-lock.ts).
 *
 * Trusts: nothing. Failure: a directory that exists and cannot be written → CliError naming it
 * and the fix; a missing one is fine (recovery creates it), anything else is left to recovery.
 *
 * Also: a DATA_DIR without a spool/ at all, beside a database whose queue needs spool files, is the
 * wrong DATA_DIR (a typo, a unit and a manual run that disagree), not a lost spool: recovery found
 * none of the files and failed every waiting delivery ("spool file missing at start").
 */
import { accessSync, constants, existsSync } from "node:fs";
import { join } from "node:path";
import { dayKey, openDatabase, schemaVersion } from "../store/db.ts";
import { messagesNeedingSpool, pendingMessages } from "../store/messages.ts";
import { CliError } from "../errors.ts";

export function requireWritableDataDir(dataDir: string, nowMs: number): void {
  const dirs = [join(dataDir, "spool"), join(dataDir, "spool", "orphaned"), join(dataDir, "archive"), join(dataDir, "archive", dayKey(nowMs))];
  for (const dir of dirs) {
    try {
      // X: a file is created in a directory only through a search of it.
      accessSync(dir, constants.W_OK | constants.X_OK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EROFS") {
        // chown cannot help here: the file system itself refuses every write.
        throw new CliError(
          `${dir} is not writable (EROFS: read-only file system), so every message would be answered 451: ` +
            "remount it read-write (dmesg says why it went read-only) or point DATA_DIR at a writable directory " +
            "(under systemd, run `mailgw systemd install` again after moving DATA_DIR, so the unit lets serve write there)",
        );
      }
      if (code !== "EACCES" && code !== "EPERM") continue;
      throw new CliError(
        `${dir} is not writable by this user (${code}), so every message would be answered 451: ` +
          `give DATA_DIR to the user mailgw runs as, e.g. chown -R ${currentOwner()} ${dataDir}`,
      );
    }
  }
}

/**
 * uid:gid of this process, for the hint. Numbers, not names: the name may not resolve (a
 * DynamicUser, a uid without a passwd entry; Bun's userInfo() then says "unknown").
 */
function currentOwner(): string {
  return `${process.getuid?.() ?? 0}:${process.getgid?.() ?? 0}`;
}

/**
 * See the header: refuses when DATA_DIR has no spool/ and the database's queue needs one. Runs
 * before migrations, on a read-only handle (its queries read columns every schema version has):
 * a start refused here must leave an older database as it was, or the executable it came from
 * could no longer open it.
 */
export function refuseQueueWithoutSpool(dataDir: string, dbPath: string): void {
  const spoolDir = join(dataDir, "spool");
  if (existsSync(spoolDir) || !existsSync(dbPath)) return;
  const db = openDatabase(dbPath, { readonly: true });
  let waiting: boolean;
  try {
    // Version 0: an empty file, no tables yet.
    waiting = schemaVersion(db) > 0 && (pendingMessages(db, "", 1).length > 0 || messagesNeedingSpool(db, "", 1).length > 0);
  } finally {
    db.close();
  }
  if (!waiting) return;
  throw new CliError(
    `DATA_DIR ${dataDir} has no spool directory, but database ${dbPath} (DATABASE_URL) has accepted messages whose files ` +
      `should be in one: point DATA_DIR at the data dir this database was used with; if that spool is lost for good, ` +
      `mkdir ${spoolDir} and start again (their deliveries then fail as "spool file missing")`,
  );
}
