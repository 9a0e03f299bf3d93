/**
 * The long-running parts of `mailgw serve` as services, in start order (stopped in reverse,
 * services.ts): rules → pipeline (spool recovery) → session counters → heap governor → free disk
 * space → delivery worker → SMTP → HTTP. HTTP comes last so `/healthz` answers ok only when SMTP is listening.
 * Each entry says what its part does on start, stop and SIGHUP, and sets the ServeState it owns.
 * Separate from gateway.ts, which builds the parts; this file decides their order and reloads.
 */
import type { Database } from "bun:sqlite";
import type { Config, RelayConfig } from "../config/config.ts";
import { changedUntilRestart } from "../config/restart-settings.ts";
import { CliError, describeError } from "../errors.ts";
import type { HttpServer } from "../http/server.ts";
import type { Logger } from "../log/logger.ts";
import type { Pipeline } from "../pipeline.ts";
import { anyHeld } from "../queue/queue-store.ts";
import { liftSuspension } from "../queue/relay-suspension.ts";
import type { ThreadedDeliveryWorker } from "../queue/threaded-worker.ts";
import type { RulesRuntime } from "../rules-runtime/runtime.ts";
import type { SmtpServerHandle } from "../smtp/server.ts";
import type { FreeSpaceMonitor } from "../store/free-space.ts";
import { isStorageError } from "../store/db.ts";
import { describeRelay, warnRelaySettings } from "./announce.ts";
import { startHeapGovernor } from "./heap-governor.ts";
import type { ServeState } from "./serve-state.ts";
import type { Service } from "./services.ts";
import type { SessionCounters } from "./session-counters.ts";

/**
 * SIGHUP re-reads `.env` (or `--env-file`) and the flags, but the process environment is fixed
 * at start: a variable that systemd's EnvironmentFile or `docker --env-file` put there, and any
 * edit of that file, is seen only after a restart.
 */
const RELAY_RELOAD_HINT =
  "RELAY_SMTP_HOST is read again from .env or --env-file on SIGHUP; set in the service's environment " +
  "(systemd's /etc/mailgw/mailgw.env, docker --env-file) it needs a restart";
/** See heap-governor.ts: bounds the main thread's garbage between full collections. */
const HEAP_GOVERNOR = { checkEveryMs: 20, idleCheckEveryMs: 1000, growthBytes: 8 * 1024 * 1024, youngGrowthBytes: 4 * 1024 * 1024, bufferGrowthBytes: 24 * 1024 * 1024 };

/** The parts gateway.ts built, each run by one service. */
export interface GatewayParts {
  rules: RulesRuntime;
  pipeline: Pipeline;
  counters: SessionCounters;
  freeSpace: FreeSpaceMonitor;
  worker: ThreadedDeliveryWorker;
  smtp: SmtpServerHandle;
  http: HttpServer;
}

export interface ServiceSettings {
  config: Config;
  logger: Logger;
  /** Re-reads the configuration on SIGHUP (relay settings); throws when it became invalid. */
  reloadConfig?: () => Config;
}

export function gatewayServices(db: Database, settings: ServiceSettings, state: ServeState, parts: GatewayParts): Service[] {
  const { config, logger } = settings;
  const { rules, pipeline, counters, freeSpace, worker, smtp, http } = parts;
  return [
    {
      name: "rules",
      start() {},
      stop: () => rules.close(),
      async reload() {
        // A changed file says "rules reloaded", a refused one its error; the same file said nothing.
        const result = await rules.reload();
        if (result.ok && !result.changed) logger.info("rules unchanged: the file is the one in force", { version: result.version });
      },
    },
    { name: "pipeline", start: () => pipeline.recover().then(() => undefined, (err: unknown) => Promise.reject(storageError(err, config))), stop: () => pipeline.close() },
    { name: "session counters", start: () => counters.start(), stop: () => counters.stop() },
    { name: "heap governor", start: () => void (state.heap = startHeapGovernor(HEAP_GOVERNOR)), stop: () => state.heap?.stop() },
    // After recovery (the spool exists), before SMTP: the first MAIL FROM already has a reading.
    { name: "free disk space", start: () => freeSpace.start(), stop: () => freeSpace.stop() },
    {
      name: "delivery",
      start: () => worker.start(),
      stop: () => worker.stop(),
      reload() {
        // A relay removed from the configuration is removed here too: new forwards are held.
        const reloaded = settings.reloadConfig?.() ?? null;
        const next = reloaded ? reloaded.relay : state.relay;
        const waiting = reloaded ? changedUntilRestart(config, reloaded) : [];
        if (waiting.length > 0) logger.warn("settings changed since start are applied at restart only (a reload applies RELAY_*)", { changed: waiting });
        if (reloadRelay(db, logger, state.relay, next, worker)) state.relay = next;
        // SIGHUP also says "the relay is fixed" (its password reset, its certificate renewed): a
        // suspension ends; the delivery worker sees it on its next claim and logs it (relay-suspension.ts).
        liftSuspension(db);
      },
    },
    {
      name: "smtp",
      start: async () => void (state.smtpAddress = await smtp.listen()),
      stop: async () => {
        state.smtpAddress = null;
        await smtp.close();
      },
      reload: () => void smtp.reloadTls(),
    },
    { name: "http", start: () => http.start(), stop: () => http.stop() },
  ];
}

/** SIGHUP: hands changed relay settings to the delivery worker; true if they changed. */
function reloadRelay(db: Database, logger: Logger, current: RelayConfig | null, next: RelayConfig | null, worker: { reloadRelay(r: RelayConfig | null): void }): boolean {
  // The usual trap: RELAY_* added to the systemd env file, then `systemctl reload`.
  // Only when forwards are waiting: an archive- or webhook-only gateway needs no relay.
  if (next === null && anyHeld(db)) logger.warn("no relay after the reload: forwards stay held", { hint: RELAY_RELOAD_HINT });
  if (JSON.stringify(next) === JSON.stringify(current)) return false;
  worker.reloadRelay(next);
  logger.info("relay settings reloaded", { relay: describeRelay(next) });
  warnRelaySettings(logger, next);
  return true;
}

/**
 * Recovery writes before SMTP listens: after a crash on a full or read-only disk serve cannot
 * start, and SQLite's bare "database or disk is full" named neither the file nor the fix.
 */
function storageError(err: unknown, config: Config): unknown {
  if (err instanceof CliError) return err;
  // Recovery's first write waited busy_timeout for a lock another process holds (a sqlite3
  // shell inside BEGIN IMMEDIATE, a VACUUM): bare, "database is locked" named neither.
  if ((err as { code?: unknown } | null)?.code === "SQLITE_BUSY") {
    return new CliError(
      `recovering the spool failed: database ${config.databasePath} (DATABASE_URL) stayed locked for writing by another process ` +
        "(a sqlite3 shell or a backup inside a transaction, a VACUUM?): end it, then start serve again (nothing accepted is lost meanwhile)",
    );
  }
  if (!isStorageError(err)) return err;
  return new CliError(
    `recovering the spool failed: ${describeError(err)} (database ${config.databasePath}, DATA_DIR ${config.dataDir}); ` +
      "free space there or make it writable, then start serve again (nothing accepted is lost meanwhile)",
  );
}
