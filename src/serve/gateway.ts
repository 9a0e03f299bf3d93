/**
 * `mailgw serve` wiring: locks the data dir, opens the database, loads the rules, builds the
 * pipeline and the long-running services, and starts them in order:
 *   DATA_DIR lock → database lock → SMTP port free? → database (migrations) → rules → pipeline (spool recovery) → session
 *   counters → free disk space → delivery worker → SMTP → HTTP
 * The lock comes first: a second serve on the same DATA_DIR must be refused before its recovery
 * or migrations touch anything the running one uses (data-dir-lock.ts). HTTP comes last so
 * `/healthz` answers ok only when SMTP is listening. Stop runs in reverse: HTTP, SMTP (sessions
 * in flight finish, bounded), worker, counters, pipeline, rules, database, locks.
 * SIGHUP (reload): rules, TLS certificate, relay settings (config re-read).
 * The start order and each service's start/stop/reload: gateway-services.ts; the sink handed to
 * SMTP: intake-sink.ts; the state the services set while serve runs: serve-state.ts.
 *
 * Trusts: the validated Config. Failure: anything that cannot start throws (CliError naming
 * the variable/file), after stopping what had started; the database is closed and the lock
 * released either way.
 */
import type { Database } from "bun:sqlite";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_DATABASE_FILE, type Config } from "../config/config.ts";
import { CliError, describeError } from "../errors.ts";
import { createHttpServer } from "../http/server.ts";
import { createStatusSource, type StatusSource } from "../http/status-source.ts";
import type { Logger } from "../log/logger.ts";
import { createPipeline, type Pipeline } from "../pipeline.ts";
import { readSuspension } from "../queue/relay-suspension.ts";
import { relaySizeLimitReader } from "../queue/relay-size-limit.ts";
import { hostPort } from "../host-port.ts";
import { createThreadedDeliveryWorker } from "../queue/threaded-worker.ts";
import { factNeeds } from "../rules/fact-needs.ts";
import { startRulesRuntime, type RulesRuntime } from "../rules-runtime/runtime.ts";
import type { SmtpLimits } from "../smtp/limits.ts";
import { createSmtpServer, probeSmtpPort, type SmtpServerHandle } from "../smtp/server.ts";
import { openDatabase } from "../store/db.ts";
import { createFreeSpaceMonitor, type FreeSpaceMonitor } from "../store/free-space.ts";
import { recheckFileFailure, recheckWriteFailure } from "../store/write-probe.ts";
import { SPOOL_SUFFIX } from "../spool/spool.ts";
import { announce } from "./announce.ts";
import { refuseQueueWithoutSpool, requireWritableDataDir } from "./data-dir-access.ts";
import { lockDatabase, lockDataDir, type DataDirLock } from "./data-dir-lock.ts";
import { gatewayServices } from "./gateway-services.ts";
import { intakeSink } from "./intake-sink.ts";
import { createResolverNotice } from "./resolver-notice.ts";
import { serviceGroup, type ServiceGroup } from "./services.ts";
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
  /** The service whose stop is under way, null when none is. */
  stopping(): string | null;
}

/** Migrations are one-way: the admin learns it when they run, not when a rollback is refused. */
const UPGRADED_HINT =
  "an older mailgw refuses this database now: to roll back, restore the backup taken before the upgrade (README: Upgrading)";

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
    const newDatabase = !existsSync(config.databasePath);
    requireWritableDataDir(config.dataDir, Date.now());
    refuseQueueWithoutSpool(config.dataDir, config.databasePath);
    db = openDatabase(config.databasePath, {
      onUpgrade: (from, to) =>
        logger.info("database schema upgraded", { database: config.databasePath, from_version: from, to_version: to, hint: UPGRADED_HINT }),
    });
    if (newDatabase) warnNewDatabaseBesideArchive(config, logger);
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

/** The archive's day directories (act/archive.ts: YYYY-MM-DD). */
const DAY_DIR_NAME = /^\d{4}-\d{2}-\d{2}$/;

/**
 * A new database beside an archive that earlier starts filled: with an empty spool nothing is
 * lost (refuseNewDatabaseBesideSpool covers a queue), but the stats and the messages' history
 * start from zero, which a wrong DATABASE_URL after a move or a restore also does silently.
 */
function warnNewDatabaseBesideArchive(config: Config, logger: Logger): void {
  const archiveDir = join(config.dataDir, "archive");
  // Day directories only, each on its own: an archive disk mounted there has a lost+found the
  // service's user cannot read, and anything else an admin left there ended the search when it
  // came first in the listing.
  const holdsMessages = (day: string): boolean => {
    try {
      return DAY_DIR_NAME.test(day) && readdirSync(join(archiveDir, day)).some((name) => name.endsWith(SPOOL_SUFFIX));
    } catch {
      return false;
    }
  };
  let archived: string | undefined;
  try {
    archived = readdirSync(archiveDir).find(holdsMessages);
  } catch {
    return; // no archive: a first start
  }
  if (archived === undefined) return;
  logger.warn("a new database was created, but the archive holds messages from earlier starts", {
    database: config.databasePath,
    archive: archiveDir,
    hint: "if the database was moved or restored elsewhere, stop serve and point DATABASE_URL at it; otherwise the stats and message history start empty",
  });
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
    relaySizeLimit: relaySizeLimitReader(db, () => (state.relay === null ? null : hostPort(state.relay.host, state.relay.port))),
    authChecksNeeded: () => resolver.authChecksNeeded(),
  });
  // Delivery runs in its own thread (own SQLite connection), so it uses a second core.
  const worker = createThreadedDeliveryWorker({ config, db, logger });
  const counters = createSessionCounters(db, logger, Date.now, (at, counts) => worker.countSessions(at, counts));
  const freeSpace = createFreeSpaceMonitor({ dataDir: config.dataDir, databasePath: config.databasePath, maxMessageBytes: config.smtp.maxMessageBytes, logger });
  const smtp = createSmtpServer({
    smtp: config.smtp,
    logger,
    sink: intakeSink(pipeline, worker, state),
    domains: () => rules.domains(),
    limits: opts.smtpLimits,
    // A session that handed over a message was counted in that message's commit.
    onSessionEnd: (s) => {
      if (!s.countedWithMessage) counters.count(s.tls);
    },
    onRefusal: (reason) => counters.refused(reason),
    roomFor: (bytes) => freeSpace.roomFor(bytes),
  });
  const status = statusSource(db, config, state, { startedAt, startedMono, rules, pipeline, smtp, freeSpace, dnsWarning: () => resolver.warning(authNeeded()) });
  const http = createHttpServer({ config, db, logger, status });
  const group = serviceGroup(gatewayServices(db, opts, state, { rules, pipeline, counters, freeSpace, worker, smtp, http }), logger);
  await group.start();
  announce(logger, config, state.smtpAddress, rules.domains(), http.url);
  // Said at start when the rules need DNS now; else before the first message whose rules do.
  if (authNeeded()) resolver.authChecksNeeded();
  return runningGateway(db, logger, group, state);
}

/** What the status page, stats.json, /metrics and /healthz read (http/ only reads). */
function statusSource(
  db: Database, config: Config, state: ServeState,
  parts: { startedAt: number; startedMono: number; rules: RulesRuntime; pipeline: Pipeline; smtp: SmtpServerHandle; freeSpace: FreeSpaceMonitor; dnsWarning: () => string | null },
): StatusSource {
  const { startedMono, rules, pipeline, smtp } = parts;
  return createStatusSource({
    startedAt: parts.startedAt,
    uptimeMs: () => performance.now() - startedMono,
    smtpListening: () => state.smtpAddress !== null,
    smtpOutOfDescriptors: () => smtp.outOfDescriptors(),
    tls: { enabled: config.smtp.tls.enabled, required: config.smtp.tls.required },
    relay: () => state.relay,
    relaySuspension: () => readSuspension(db),
    rules: () => rules.status(),
    databaseWriteFailure: oneAtATime(() => {
      const failure = pipeline.databaseWriteFailure();
      return recheckWriteFailure(db, failure, () => failure !== null && pipeline.databaseWriteRecovered(failure));
    }),
    // The probe clears a received message's failure only. An archive copy's failure after the 250
    // is cleared by the minute sweep's next copy: a probe of a few bytes passed on an archive disk
    // too full for the messages, which then piled up in the spool while /healthz said 200.
    fileWriteFailure: oneAtATime(async () => {
      const received = pipeline.receivedFileFailure();
      if (received !== null) await recheckFileFailure(config.dataDir, Date.now(), received, () => pipeline.syncStorage(), () => pipeline.fileWriteRecovered(received));
      return pipeline.fileWriteFailure();
    }),
    tlsStatus: () => smtp.tlsStatus(),
    dnsWarning: parts.dnsWarning,
    diskWarnings: () => parts.freeSpace.warnings(),
    storage: { dataDir: config.dataDir, ownDatabase: config.databasePath === join(config.dataDir, DEFAULT_DATABASE_FILE) ? null : config.databasePath },
  });
}

/**
 * `probe`, with calls made while one runs given that one's answer: /healthz is open to anyone
 * who reaches the HTTP port, and while a write failure is on record each check writes (and
 * syncs): a burst of checks must not become a burst of syncfs calls.
 */
export function oneAtATime<T>(probe: () => Promise<T>): () => Promise<T> {
  let running: Promise<T> | null = null;
  return () => (running ??= probe().finally(() => (running = null)));
}

/** The started gateway: its SMTP address, SIGHUP, and stop (services in reverse, then the database). */
function runningGateway(db: Database, logger: Logger, group: ServiceGroup, state: ServeState): Gateway {
  return {
    smtpAddress: () => state.smtpAddress,
    reload: async () => {
      logger.info("SIGHUP: reloading rules, TLS certificate and relay settings");
      await group.reload();
    },
    stopping: () => group.stopping(),
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
