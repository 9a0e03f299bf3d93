/**
 * `mailgw queue list|retry|drop` (SPEC §1): inspect and act on the delivery queue of a data
 * dir, also while `serve` runs on it. Wiring only; the work is in src/queue/queue-admin.ts.
 * Config: DATABASE_URL and DATA_DIR as for serve (flags > environment > .env > defaults).
 * Exit 0 done (`retry --all` with nothing to retry included), 1 on any error (unknown ID, an ID that
 * cannot be retried, unreadable database).
 */
import { accessSync, constants } from "node:fs";
import { defineCommand } from "citty";
import { loadStoragePaths, type StoragePaths } from "../config/config.ts";
import { CliError, describeError } from "../errors.ts";
import { terminalSafeJson } from "../log/terminal-json.ts";
import { drop, dropFailed, formatList, formatRetry, interruptedNote, listEntries, parseStates, retry, suspensionNote, truncationNote } from "../queue/queue-admin.ts";
import { countQueue } from "../queue/queue-store.ts";
import { createSpoolAccess } from "../queue/spool-access.ts";
import { serveRunning } from "../serve/data-dir-lock.ts";
import { openDatabase } from "../store/db.ts";
import { cliAction } from "./action.ts";
import { envFileArg, envFileOption } from "./env-file.ts";

const configArgs = {
  "data-dir": { type: "string", description: "Data directory (DATA_DIR, default ./data)" },
  "database-url": { type: "string", description: "SQLite file (DATABASE_URL, default mail-gateway.db in the data directory)" },
  ...envFileArg,
} as const;

interface ConfigArgs {
  "data-dir"?: string;
  "database-url"?: string;
  "env-file"?: string;
}

function open(args: ConfigArgs) {
  const config: StoragePaths = loadStoragePaths({ envFile: envFileOption(args["env-file"]), flags: { DATA_DIR: args["data-dir"], DATABASE_URL: args["database-url"] } });
  try {
    accessSync(config.databasePath, constants.R_OK | constants.W_OK);
  } catch (err) {
    const code = err instanceof Error && "code" in err ? String(err.code) : "";
    if (code === "ENOENT") throw new CliError(`no database at ${config.databasePath}: run mailgw queue where serve runs, or pass --env-file, --data-dir or --database-url`);
    // A file where a directory of the path should be: a wrong --data-dir, not a permission.
    if (code === "ENOTDIR") throw new CliError(`no database at ${config.databasePath}: a part of that path is a file, not a directory; check --data-dir, --database-url or the --env-file's DATA_DIR/DATABASE_URL`);
    // existsSync says "no" to a file it may not look at: name the real problem.
    throw new CliError(`cannot open ${config.databasePath} (${code || describeError(err)}): run mailgw queue as the user serve runs as (README: systemd)`);
  }
  return { config, db: openDatabase(config.databasePath, { migrate: false }) };
}

/**
 * A change waits BUSY_TIMEOUT_MS for SQLite's write lock; serve holds it for milliseconds, so
 * running out means another process holds it (a `sqlite3` shell or a backup inside a
 * transaction). Say so, and that nothing was changed, instead of a bare "database is locked".
 */
function whileUnlocked<T>(config: StoragePaths, change: () => T): T {
  try {
    const result = change();
    if (result instanceof Promise) return result.catch((err: unknown) => rethrowBusy(config, err)) as T;
    return result;
  } catch (err) {
    return rethrowBusy(config, err);
  }
}

function rethrowBusy(config: StoragePaths, err: unknown): never {
  if (err instanceof Error && "code" in err && err.code === "SQLITE_BUSY") {
    throw new CliError(`${config.databasePath} stayed locked for writing by another process (a sqlite3 shell or a backup inside a transaction?): nothing was changed; end that transaction and run the command again`);
  }
  throw err;
}

const list = defineCommand({
  meta: { name: "list", description: "Show deliveries: id, state, age, attempts, next try, target, last error" },
  args: {
    ...configArgs,
    state: { type: "string", description: "Only these states, comma-separated (default: all but delivered)" },
    json: { type: "boolean", description: "Print JSON instead of a table" },
  },
  run: cliAction((args: ConfigArgs & { state?: string; json?: boolean }) => {
    const states = parseStates(args.state);
    const { config, db } = open(args);
    const now = Date.now();
    const entries = listEntries(db, states, now);
    const total = countQueue(db, states); // more than listEntries returns past LIST_LIMIT
    const stopped = serveRunning(config.dataDir) === false;
    const interrupted = stopped ? interruptedNote(entries, config.dataDir) : null;
    // Above the table: why the forwards in it are not being tried.
    const suspended = suspensionNote(db, now, stopped);
    if (!args.json) {
      return void process.stdout.write((suspended === null ? "" : `${suspended}\n\n`) + formatList(entries, now, total) + (interrupted === null ? "" : `${interrupted}\n`));
    }
    // The JSON stays an array (scripts read it); notes go to stderr.
    for (const note of [suspended, truncationNote(entries.length, total), interrupted]) if (note !== null) process.stderr.write(`mailgw: ${note}\n`);
    // A receiver's or relay's reply in lastError may carry bidi overrides and C1 controls:
    // escaped, as the table shows them as '?' (the same values for a JSON parser).
    process.stdout.write(`${terminalSafeJson(entries, 2)}\n`);
  }),
});

const retryCommand = defineCommand({
  meta: { name: "retry", description: "Make failed, deferred or held deliveries due now, with a fresh QUEUE_MAX_AGE_HOURS and backoff: retry ID, or retry --all" },
  args: {
    ...configArgs,
    id: { type: "positional", required: false, valueHint: "ID", description: "Message id (or MESSAGE#N, or a delivery number)" },
    all: { type: "boolean", description: "Every failed, deferred and held delivery" },
  },
  run: cliAction((args: ConfigArgs & { id?: string; all?: boolean }) => {
    if (Boolean(args.all) === Boolean(args.id)) throw new CliError("give either an ID or --all (mailgw queue retry ID | mailgw queue retry --all)");
    const { config, db } = open(args);
    process.stdout.write(formatRetry(whileUnlocked(config, () => retry(db, args.all ? null : (args.id ?? null), Date.now(), serveRunning(config.dataDir) === false))));
  }),
});

const dropCommand = defineCommand({
  meta: { name: "drop", description: "Remove a delivery from the queue (its spool file is deleted once nothing needs it): drop ID, or drop --failed" },
  args: {
    ...configArgs,
    id: { type: "positional", required: false, valueHint: "ID", description: "Message id (or MESSAGE#N, or a delivery number)" },
    failed: { type: "boolean", description: "Every failed delivery (what mailgw gave up on)" },
  },
  run: cliAction(async (args: ConfigArgs & { id?: string; failed?: boolean }) => {
    if (Boolean(args.failed) === Boolean(args.id)) throw new CliError("give either an ID or --failed (mailgw queue drop ID | mailgw queue drop --failed)");
    const { config, db } = open(args);
    const spool = createSpoolAccess(db, config.dataDir);
    process.stdout.write(await whileUnlocked(config, () => (args.failed ? dropFailed(db, spool) : drop(db, spool, args.id ?? ""))));
  }),
});

export default defineCommand({
  meta: { name: "queue", description: "Inspect and act on the delivery queue (works while serve runs)" },
  subCommands: { list, retry: retryCommand, drop: dropCommand },
});
