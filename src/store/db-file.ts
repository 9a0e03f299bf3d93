/**
 * The database file a connection opened, by device and inode. A database deleted or replaced
 * under a running gateway (an `rm`, a restore copied over it) still answers through the open
 * handle, but every commit then goes to an unlinked inode: after a restart the accepted
 * messages have no rows and recovery sets their spool files aside as never acknowledged.
 * So /healthz reports it, and the intake refuses to commit into it (451, never a 250).
 * Trusts: nothing. Failure: none; a file that cannot be stat'ed is itself the problem.
 */
import { statSync } from "node:fs";
import { describeError } from "../errors.ts";

export interface DatabaseFile {
  path: string;
  dev: number;
  ino: number;
}

/** Identity of the database file at `path`, taken right after opening it; null if unreadable. */
export function databaseFile(path: string): DatabaseFile | null {
  try {
    const st = statSync(path);
    return { path, dev: st.dev, ino: st.ino };
  } catch {
    return null;
  }
}

/** Null while `path` still names the file opened; else a short reason and the detail for the log. */
export function databaseFileProblem(file: DatabaseFile): { reason: string; detail: string } | null {
  try {
    const st = statSync(file.path);
    if (st.dev === file.dev && st.ino === file.ino) return null;
    return { reason: "database file was replaced since start", detail: `database ${file.path} was replaced since mailgw opened it: restart mailgw` };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EACCES" || code === "EPERM") {
      // The file may well be there: its directory was made unreadable to mailgw's user.
      return { reason: `database file cannot be reached (${code})`, detail: `database ${file.path} cannot be reached by mailgw's user (${code}): restore the permissions of its directory` };
    }
    const what = code === "ENOENT" ? "was deleted since mailgw opened it" : `cannot be checked (${describeError(err)})`;
    return { reason: `database file is gone${code ? ` (${code})` : ""}`, detail: `database ${file.path} ${what}: restart mailgw` };
  }
}
