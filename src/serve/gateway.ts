/**
 * `mailgw serve` wiring: locks the data dir, opens the database, loads the rules, builds the
 * pipeline and the long-running services, and starts them in order:
 *   DATA_DIR lock → database lock → SMTP port free? → database (migrations) → rules → pipeline (spool recovery) → session
 *   counters → delivery worker → SMTP → HTTP
 * The lock comes first: a second serve on the same DATA_DIR must be refused before its recovery
 * or migrations touch anything the running one uses (data-dir-lock.ts). HTTP comes last so
 * `/healthz` answers ok only when SMTP is listening. Stop runs in reverse: HTTP, SMTP (sessions
 * in flight finish, bounded), worker, counters, pipeline, rules, database, locks.
 * SIGHUP (reload): rules, TLS certificate, relay settings (config re-read).
 *
 * Trusts: the validated Config. Failure: anything that cannot start throws (CliError naming
 * the variable/file), after stopping what had started; the database is closed and the lock
 * released either way.
 */
import type { Database } from "bun:sqlite";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { Config, RelayConfig } from "../config/config.ts";
import { CliError, describeError } from "../errors.ts";
import { createHttpServer } from "../http/server.ts";
import { createStatusSource } from "../http/status-source.ts";
import type { Logger } from "../log/logger.ts";
import { createPipeline } from "../pipeline.ts";
import { anyHeld } from "../queue/queue-store.ts";
import { liftSuspension, readSuspension } from "../queue/relay-suspension.ts";
import { createThreadedDeliveryWorker } from "../queue/threaded-worker.ts";
import { factNeeds } from "../rules/fact-needs.ts";
import { startRulesRuntime } from "../rules-runtime/runtime.ts";
import type { SmtpLimits } from "../smtp/limits.ts";
import { createSmtpServer, probeSmtpPort } from "../smtp/server.ts";
import { isStorageError, openDatabase } from "../store/db.ts";
import { SPOOL_SUFFIX } from "../spool/spool.ts";
import { announce, describeRelay, warnRelaySettings } from "./announce.ts";
import { refuseQueueWithoutSpool, requireWritableDataDir } from "./data-dir-access.ts";
import { lockDatabase, lockDataDir, type DataDirLock } from "./data-dir-lock.ts";
import { startHeapGovernor } from "./heap-governor.ts";
import { intakeSink } from "./intake-sink.ts";
import { createResolverNotice } from "./resolver-notice.ts";
import { serviceGroup, type Service } from "./services.ts";
import type { ServeState } from "./serve-state.ts";
import { createSessionCounters } from "./session-counters.ts";

export interface GatewayOptions {
  config: Config;
  logger: Logger;
  /** Re-reads the configuration on SIGHUP (relay settings); throws when it became invalid. */
  reloadConfig?: () => Config;
  smtpLimits?: Partial<SmtpLimits>;
}

export interface Gateway {
  smtpAddress(): { host: string; port: number } | null;
  reload(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * SIGHUP re-reads `.env` (or `--env-file`) and the flags, but the process environment is fixed
 * at start: a variable that systemd's EnvironmentFile or `docker --env-file` put there, and any
 * edit of that file, is seen only after a restart.
 */
const RELAY_RELOAD_HINT =
  "RELAY_SMTP_HOST is read again from .env or --env-file on SIGHUP; set in the service's environment " +
  "(systemd's /etc/mailgw/mailgw.env, docker --env-file) it needs a restart";
/** Migrations are one-way: the admin learns it when they run, not when a rollback is refused. */
const UPGRADED_HINT =
  "an older mailgw refuses this database now: to roll back, restore the backup taken before the upgrade (README: Upgrading)";
/** See heap-governor.ts: bounds the main thread's garbage between full collections. */
const HEAP_GOVERNOR = { checkEveryMs: 20, idleCheckEveryMs: 1000, growthBytes: 8 * 1024 * 1024, youngGrowthBytes: 4 * 1024 * 1024, bufferGrowthBytes: 24 * 1024 * 1024 };

export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const { config, logger } = opts;
  // Before anything opens the database or the spool: throws if another serve has DATA_DIR.
  const lock = lockDataDir(config.dataDir, logger);
  let dbLock: DataDirLock | null = null;
  let db: Database | null = null;
  try {
    // A serve with another DATA_DIR on the same database would run its recovery over this queue.
    dbLock = lockDatabase(config.databasePath, logger);
    // An older serve holds no lock, only the port: it must be refused before migrations and recovery.
    await probeSmtpPort(config.smtp.host, config.smtp.port);
    refuseNewDatabaseBesideSpool(config);
    requireWritableDataDir(config.dataDir, Date.now());
    refuseQueueWithoutSpool(config.dataDir, config.databasePath);
    db = openDatabase(config.databasePath, {
      onUpgrade: (from, to) =>
        logger.info("database schema upgraded", { database: config.databasePath, from_version: from, to_version: to, hint: UPGRADED_HINT }),
    });
  } catch (err) {
    db?.close();
    dbLock?.release();
    lock.release();
    throw err;
  }
  const releaseLocks = (): void => {
    dbLock.release();
    lock.release();
  };
  let gateway: Gateway;
  try {
    gateway = await startServices(db, opts);
  } catch (err) {
    db.close();
    releaseLocks();
    throw err;
  }
  return {
    ...gateway,
    async stop() {
      await gateway.stop();
      // Last: a serve started after this one's stop must find the database closed too.
      releaseLocks();
    },
  };
}

/**
 * A database about to be created beside a spool that holds accepted messages is the wrong one,
 * not a first start: DATABASE_URL changed in a move or a restore, or an upgrade from a mailgw
 * that kept the database in ./data of its working directory when DATABASE_URL was unset (it
 * goes with DATA_DIR now). Started anyway, recovery found no record of those messages and moved
 * them all to spool/orphaned/ as "never acknowledged": the queue gone, without an error.
 */
function refuseNewDatabaseBesideSpool(config: Config): void {
  if (existsSync(config.databasePath)) return;
  const spoolDir = join(config.dataDir, "spool");
  let waiting: number;
  try {
    waiting = readdirSync(spoolDir).filter((name) => name.endsWith(SPOOL_SUFFIX)).length;
  } catch {
    return; // no spool yet (a first start), or one recovery will report on
  }
  if (waiting === 0) return;
  throw new CliError(
    `database ${config.databasePath} (DATABASE_URL) does not exist, but ${spoolDir} holds ${waiting} accepted message(s) ` +
      `recorded in another database: point DATABASE_URL at it (with DATABASE_URL unset, older versions kept it in ` +
      `./data/mail-gateway.db of the directory they ran in); to start on a new database, move those .eml files out of the spool first`,
  );
}

async function startServices(db: Database, opts: GatewayOptions): Promise<Gateway> {
  const { config, logger } = opts;
  const startedAt = Date.now();
  const startedMono = performance.now();
  const rules = await startRulesRuntime({ file: config.rulesFile, logger, db });
  const resolver = createResolverNotice(logger);
  const authNeeded = (): boolean => factNeeds(rules.current()).auth;
  const state: ServeState = { heap: null, relay: config.relay, smtpAddress: null };
  const pipeline = createPipeline({
    config, db, logger, rules,
    afterBigMessage: () => void state.heap?.check(),
    relayConfigured: () => state.relay !== null,
    authChecksNeeded: () => resolver.authChecksNeeded(),
  });
  // Delivery runs in its own thread (own SQLite connection), so it uses a second core.
  const worker = createThreadedDeliveryWorker({ config, db, logger });
  const counters = createSessionCounters(db, logger, Date.now, (at, sessions, tls) => worker.countSessions(at, sessions, tls));
  const smtp = createSmtpServer({
    smtp: config.smtp,
    logger,
    sink: intakeSink(pipeline, worker, state),
    domains: () => rules.domains(),
    limits: opts.smtpLimits,
    onSessionEnd: (s) => counters.count(s.tls),
  });
  const http = createHttpServer({
    config,
    db,
    logger,
    status: createStatusSource({
      startedAt,
      uptimeMs: () => performance.now() - startedMono,
      smtpListening: () => state.smtpAddress !== null,
      tls: { enabled: config.smtp.tls.enabled, required: config.smtp.tls.required },
      relay: () => state.relay,
      relaySuspension: () => readSuspension(db),
      rules: () => rules.status(),
      databaseWriteFailure: () => pipeline.databaseWriteFailure(),
      tlsStatus: () => smtp.tlsStatus(),
      dnsWarning: () => resolver.warning(authNeeded()),
    }),
  });

  const services: Service[] = [
    { name: "rules", start() {}, stop: () => rules.close(), reload: () => rules.reload().then(() => undefined) },
    { name: "pipeline", start: () => pipeline.recover().then(() => undefined, (err: unknown) => Promise.reject(storageError(err, config))), stop: () => pipeline.close() },
    { name: "session counters", start: () => counters.start(), stop: () => counters.stop() },
    { name: "heap governor", start: () => void (state.heap = startHeapGovernor(HEAP_GOVERNOR)), stop: () => state.heap?.stop() },
    {
      name: "delivery",
      start: () => worker.start(),
      stop: () => worker.stop(),
      reload() {
        // A relay removed from the configuration is removed here too: new forwards are held.
        const next = opts.reloadConfig ? opts.reloadConfig().relay : state.relay;
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
  const group = serviceGroup(services, logger);
  await group.start();
  announce(logger, config, state.smtpAddress, rules.domains(), http.url);
  // Said at start when the rules need DNS now; else before the first message whose rules do.
  if (authNeeded()) resolver.authChecksNeeded();

  return {
    smtpAddress: () => state.smtpAddress,
    reload: async () => {
      logger.info("SIGHUP: reloading rules, TLS certificate and relay settings");
      await group.reload();
    },
    async stop() {
      await group.stop();
      try {
        db.close();
      } catch (err) {
        logger.error("closing the database failed", { error: describeError(err) });
      }
    },
  };
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
  if (err instanceof CliError || !isStorageError(err)) return err;
  return new CliError(
    `recovering the spool failed: ${describeError(err)} (database ${config.databasePath}, DATA_DIR ${config.dataDir}); ` +
      "free space there or make it writable, then start serve again (nothing accepted is lost meanwhile)",
  );
}
