/**
 * Opens the SQLite database (bun:sqlite) in WAL mode and brings its schema up to date.
 *
 * Durability: synchronous=FULL, so a commit is on disk when it returns — the `250` reply
 * depends on it. WAL lets readers (stats page, `mailgw queue list` in another process) run
 * while the single writer commits. busy_timeout covers the short moments two processes
 * (serve and the queue CLI) both want to write.
 * Failure: an unopenable file or a failed migration throws a CliError naming the file.
 */
import { Database } from "bun:sqlite";
import { accessSync, constants, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { CliError, describeError } from "../errors.ts";
import { MIGRATIONS } from "./migrations.ts";

/** How long a writer waits for another process's write lock before failing. */
const BUSY_TIMEOUT_MS = 5000;
/**
 * What is left of the WAL file on disk once a checkpoint has emptied it. SQLite reuses the WAL
 * from its start but never shrinks it: a reader that held a snapshot for a while (`sqlite3`
 * left inside BEGIN, a long `.backup`) while mail flowed made it grow by ~30 KB a message
 * (hundreds of MB an hour), and it stayed that size until serve stopped. Normal use stays
 * near 4 MB (the 1000-page autocheckpoint), far below this.
 */
export const WAL_SIZE_LIMIT_BYTES = 16 * 1024 * 1024;

/**
 * `migrate: false` (`mailgw queue`): a database of an older schema is refused instead of upgraded.
 * A new binary's admin command must not upgrade the database under an older serve still running
 * on it (that serve's own `mailgw queue` would then refuse it, and going back takes a restore).
 */
/**
 * `onUpgrade`: called once migrations took an existing database (not a new file) from version
 * `from` to `to`, for serve's log: from then on an older mailgw refuses the file.
 */
export function openDatabase(path: string, opts: { readonly?: boolean; migrate?: boolean; onUpgrade?: (from: number, to: number) => void } = {}): Database {
  let db: Database;
  if (!opts.readonly) requireWritable(path);
  try {
    if (!opts.readonly) mkdirSync(dirname(path), { recursive: true });
    db = new Database(path, opts.readonly ? { readonly: true } : { create: true, readwrite: true, strict: true });
  } catch (err) {
    throw new CliError(`cannot open database ${path}: ${describeError(err)} (check DATABASE_URL and permissions)`);
  }
  try {
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    // The first read of the file: where a file that is not SQLite at all says so.
    if (schemaVersion(db) === 0) requireNoForeignTables(db, path);
    if (opts.readonly) return db;
    db.exec("PRAGMA journal_mode = WAL");
    db.exec(`PRAGMA journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
    db.exec("PRAGMA synchronous = FULL");
    db.exec("PRAGMA foreign_keys = ON");
  } catch (err) {
    db.close();
    if (err instanceof CliError) throw err;
    // A full or read-only disk is not a wrong file: a new file would leave the queue behind.
    if (isStorageError(err)) throw new CliError(`database ${path} (DATABASE_URL) cannot be written: ${describeError(err)}; free space there or make it writable, then start again`);
    throw new CliError(`database ${path} (DATABASE_URL) cannot be used: ${describeError(err)}; point DATABASE_URL at mailgw's database, or at a new file`);
  }
  if (opts.migrate === false) requireCurrentSchema(db, path);
  else {
    const from = schemaVersion(db);
    migrate(db, path);
    const to = schemaVersion(db);
    if (from > 0 && to > from) opts.onUpgrade?.(from, to);
  }
  return db;
}

/**
 * A SQLite file with no mailgw schema but tables of its own is another program's database
 * (DATABASE_URL pointing at the wrong file): mailgw's tables were added to it, its journal mode
 * changed, without a word. Refused before anything is written; an empty file is a new database.
 */
function requireNoForeignTables(db: Database, path: string): void {
  const tables = db
    .query<{ name: string }, []>(`SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, 7) <> 'sqlite_' ORDER BY name LIMIT 6`)
    .all()
    .map((r) => r.name);
  if (tables.length === 0) return;
  const named = tables.length > 5 ? `${tables.slice(0, 5).join(", ")}, …` : tables.join(", ");
  throw new CliError(
    `database ${path} (DATABASE_URL) is not mailgw's: it has tables of another program (${named}) and no mailgw schema; ` +
      "point DATABASE_URL at mailgw's database, or at a new file",
  );
}

function requireCurrentSchema(db: Database, path: string): void {
  const current = schemaVersion(db);
  const latest = MIGRATIONS.at(-1)?.version ?? 0;
  if (current >= latest) return migrate(db, path); // newer: migrate() refuses it, naming both
  db.close();
  throw new CliError(`database ${path} has schema version ${current}, older than this mailgw (${latest}): ` +
    `use the mailgw that serve runs, or restart serve with this one (its start upgrades the database)`);
}

/**
 * SQLite opens a file this user may not write read-only, without a word, and the first write
 * then fails deep in start-up as a bare "attempt to write a readonly database". The usual cause
 * is a restored backup (or a -wal/-shm left by `sudo sqlite3`) owned by root.
 */
function requireWritable(path: string): void {
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    try {
      accessSync(file, constants.W_OK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // Only an ownership/permission problem has this fix; anything else (no such file, a path
      // through a non-directory) is left to the open below, which names it.
      if (code !== "EACCES" && code !== "EPERM") continue;
      throw new CliError(
        `database file ${file} (DATABASE_URL) is not writable by this user (${code}): ` +
          `give it to the user mailgw runs as, e.g. chown --reference=${dirname(path)} ${file}`,
      );
    }
  }
}

/** Codes of a database or data dir that cannot be written (full disk, read-only, permissions). */
const STORAGE_CODE = /^(SQLITE_(FULL|READONLY|IOERR|CANTOPEN|PERM)|ENOSPC|EDQUOT|EROFS|EACCES|EPERM|EIO)/;

export function isStorageError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && STORAGE_CODE.test(code);
}

export function schemaVersion(db: Database): number {
  const row = db.query<{ user_version: number }, []>("PRAGMA user_version").get();
  return row?.user_version ?? 0;
}

function migrate(db: Database, path: string): void {
  const current = schemaVersion(db);
  const latest = MIGRATIONS.at(-1)?.version ?? 0;
  if (current > latest) {
    // Usually met when rolling back: the newer executable migrated the file at its start.
    throw new CliError(
      `database ${path} has schema version ${current}, newer than this mailgw (${latest}): a newer mailgw upgraded it; ` +
        `run the newer mailgw again, or restore the database backup taken before the upgrade to use this one (README: Upgrading)`,
    );
  }
  for (const m of MIGRATIONS) {
    if (m.version <= current) continue;
    try {
      db.transaction(() => {
        // Another process (serve and `mailgw queue` starting together) may have run it while
        // this one waited for the write lock: the version read above is stale then.
        if (schemaVersion(db) >= m.version) return;
        db.exec(m.sql);
        db.exec(`PRAGMA user_version = ${m.version}`);
      }).immediate();
    } catch (err) {
      throw new CliError(`database ${path}: migration ${m.version} (${m.name}) failed: ${describeError(err)}`);
    }
  }
}

/** UTC day key used by daily_counters and the archive layout. */
export function dayKey(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}
