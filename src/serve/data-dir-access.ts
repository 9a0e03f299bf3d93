/**
 * Before recovery: the directories every accepted message is written into must be writable by
 * the user serve runs as. A data dir first created by root (a manual `sudo mailgw serve`, a
 * restore copied as root) and then given to the service user with a `chown` without `-R` left
 * `spool/` and `archive/` root's: serve started, logged "started", /healthz said ok, and every
 * message was answered 451 (EACCES on `spool/<id>.tmp` or the archive's day directory), forever.
 * SQLite's files have their own check (store/db.ts); this covers the rest of DATA_DIR.
 *
 * Trusts: nothing. Failure: a directory that exists and cannot be written → CliError naming it
 * and the fix; a missing one is fine (recovery creates it), anything else is left to recovery.
 */
import { accessSync, constants } from "node:fs";
import { join } from "node:path";
import { dayKey } from "../store/db.ts";
import { CliError } from "../errors.ts";

export function requireWritableDataDir(dataDir: string, nowMs: number): void {
  const dirs = [join(dataDir, "spool"), join(dataDir, "spool", "orphaned"), join(dataDir, "archive"), join(dataDir, "archive", dayKey(nowMs))];
  for (const dir of dirs) {
    try {
      // X: a file is created in a directory only through a search of it.
      accessSync(dir, constants.W_OK | constants.X_OK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
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
