/**
 * The pipeline: the one place that connects the stages behind an SMTP session.
 *
 *   openIncoming() → `spool/<id>.tmp`, which smtp/ writes DATA into as it arrives
 *   receiveOwned(file, envelope)  (receive(raw, envelope) does both at once)
 *     → parse (extractFacts: the MIME body only when a rule reads body or attachments,
 *       SPF/DKIM/DMARC only when a rule reads them — rules/fact-needs.ts; a big message is
 *       read from its file by a parse worker, a small one parsed from memory)
 *     → classify (the rules in force right now)
 *     → reject: file removed, row recorded, 550 5.7.1
 *     → otherwise: file renamed to `<id>.eml` + row + deliveries + counters made durable
 *       (group commit, act/intake.ts) → resolve (the caller answers 250)
 *     → after the reply: archive copy, status done, spool released (act/finish.ts)
 *
 * Trusts: the bytes and envelope from smtp/ (size already limited there). Nothing from the
 * message becomes a path. Failure: any storage error → SmtpError 451 4.3.0 (detail logged,
 * nothing half-written); an unexpected error anywhere → 451 too, never 250. A parse worker that
 * crashes or times out on a message → 451 as well (see pipeline/receiver.ts).
 * Start-up: `recover()` before SMTP listens (finishes what a crash left, starts the
 * background retention and retry timers). `close()` waits for work in flight.
 *
 * This file only wires the parts in pipeline/ and orders start-up and shut-down:
 *   receiver.ts            the per-message path above (openIncoming → reply), the act step
 *   message-classifier.ts  parse + classify, and the parse workers
 *   admission.ts           closed or not, receives in flight (what close() waits for)
 *   durability-mode.ts     the spool writer thread (group syncfs) or fsync per file
 *   background-timers.ts   the minute sweep and archive retention
 */
import type { Database } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import type { Config } from "./config/config.ts";
import type { Logger } from "./log/logger.ts";
import type { RulesRuntime } from "./rules-runtime/runtime.ts";
import { Archive } from "./act/archive.ts";
import { Finisher } from "./act/finish.ts";
import { Intake, type IntakeStats } from "./act/intake.ts";
import { recoverSpool, type RecoveryReport } from "./spool/recovery.ts";
import type { IncomingFile } from "./spool/incoming-file.ts";
import { Spool } from "./spool/spool.ts";
import { WalSync } from "./spool/wal-sync.ts";
import type { Envelope, MessageSink, ReceiveOutcome } from "./types.ts";
import { Admission } from "./pipeline/admission.ts";
import { BackgroundTimers } from "./pipeline/background-timers.ts";
import { DurabilityMode } from "./pipeline/durability-mode.ts";
import { MessageClassifier } from "./pipeline/message-classifier.ts";
import { Receiver } from "./pipeline/receiver.ts";

export { publicRejectText } from "./pipeline/receiver.ts";

export interface PipelineDeps {
  config: Config;
  db: Database;
  logger: Logger;
  rules: RulesRuntime;
  /** Clock, for tests (default Date.now). */
  now?: () => number;
  /** Called after a message of BIG_MESSAGE_BYTES or more, before its parse (the heap governor's check). */
  afterBigMessage?: () => void;
  /**
   * Whether a relay is configured now (SIGHUP can add or remove one): new forwards are queued
   * for it, or held without one. Default: `config.relay` as loaded at start.
   */
  relayConfigured?: () => boolean;
  /** See ReceiverDeps.relaySizeLimit (default: none known). */
  relaySizeLimit?: () => number | null;
  /** Called before a message's SPF/DKIM/DMARC checks (serve says once that no DNS server is configured). */
  authChecksNeeded?: () => void;
}

export interface Pipeline extends MessageSink {
  /** For the SMTP layer: a new spool file to write DATA into as it arrives. */
  openIncoming(): Promise<IncomingFile>;
  /** Like receive(), for the SMTP layer: takes ownership of `file` (installs or removes it). */
  receiveOwned(file: IncomingFile, envelope: Envelope): Promise<ReceiveOutcome>;
  /** Finishes what a crash left in the spool; starts background timers. Call before listening. */
  recover(): Promise<RecoveryReport>;
  /**
   * Stops accepting (451), waits for receives, commits and post-250 work in flight, stops
   * timers. Call after the SMTP listener has stopped; the database must stay open until then.
   */
  close(): Promise<void>;
  /** For the delivery worker: removes the spool file once nothing needs it. */
  releaseSpool(id: string): Promise<boolean>;
  /** For the delivery worker: the exact accepted bytes of a spooled message. */
  readSpooled(id: string): Promise<Uint8Array>;
  /** Resolves when post-250 work scheduled so far is done (tests, shutdown). */
  settle(): Promise<void>;
  intakeStats(): IntakeStats;
  /**
   * Why the last commit of a received message's rows failed (database full, read-only, I/O
   * error), or null once a later one succeeded: /healthz reports the database unusable
   * meanwhile, since a query alone still answers while every message gets 451.
   */
  databaseWriteFailure(): string | null;
  /** The database took a write again (store/write-probe.ts): forgets `failure` if it is still the one on record. */
  databaseWriteRecovered(failure: string): void;
  /**
   * Why the last message file could not be written (spool or archive: the message got 451) or
   * archived after its 250 (it waits in the spool for the minute sweep), null once a later one
   * succeeded: the spool probe of /healthz passes while the archive directory is unusable.
   */
  fileWriteFailure(): string | null;
  /** The part of fileWriteFailure() a received message's 451 put there (what a write probe may clear), or null. */
  receivedFileFailure(): string | null;
  /** A file could be written again (store/write-probe.ts): forgets the received message's `failure` if still on record. */
  fileWriteRecovered(failure: string): void;
  /** Resolves when the sync every accepted message waits for goes through now (Intake.syncNow). */
  syncStorage(): Promise<void>;
  /**
   * What the minute timer runs: releases held-back deliveries and finishes messages left
   * unfinished (created or received over a minute ago). Resolves with the messages scheduled.
   */
  sweep(): Promise<number>;
}

export function createPipeline(deps: PipelineDeps): Pipeline {
  const { config, db, logger, rules } = deps;
  const now = deps.now ?? Date.now;
  const spool = new Spool(config.dataDir);
  mkdirSync(spool.orphanDir, { recursive: true });
  const archive = new Archive(config.dataDir);
  const wal = new WalSync(db);
  const intake = new Intake(db, spool, wal);
  const finisher = new Finisher(db, spool, archive, logger, wal);
  const durability = new DurabilityMode({ db, spool, wal, intake, archive, logger });
  const timers = new BackgroundTimers({ config, db, logger, finisher, archive, now, heldBackSince: () => intake.heldBackSince() });
  const classifier = new MessageClassifier({ config, logger, rules, authChecksNeeded: deps.authChecksNeeded });
  const admission = new Admission();
  const receiver = new Receiver({
    config, logger, spool, intake, finisher, classifier, durability, admission, now,
    relayConfigured: deps.relayConfigured ?? ((): boolean => config.relay !== null),
    ...(deps.relaySizeLimit ? { relaySizeLimit: deps.relaySizeLimit } : {}),
    afterBigMessage: deps.afterBigMessage,
  });

  return {
    receive: receiver.receive,
    receiveOwned: receiver.receiveOwned,
    openIncoming: receiver.openIncoming,
    async recover() {
      const report = await recoverSpool(db, spool, finisher, logger, config.dataDir);
      await durability.start();
      await classifier.startWorkers();
      if (!admission.closed) timers.start();
      return report;
    },
    async close() {
      admission.close();
      await timers.stop();
      await admission.idle();
      await intake.drain();
      await finisher.idle();
      finisher.close();
      await durability.close();
      await classifier.close();
    },
    releaseSpool: (id) => finisher.release(id),
    readSpooled: (id) => spool.read(id),
    settle: async () => {
      await intake.drain();
      await finisher.idle();
    },
    intakeStats: () => ({ ...intake.stats }),
    databaseWriteFailure: () => receiver.databaseWriteFailure,
    databaseWriteRecovered: (failure) => receiver.forgetCommitFailure(failure),
    fileWriteFailure: () => receiver.fileWriteFailure ?? finisher.archiveFailure,
    receivedFileFailure: () => receiver.fileWriteFailure,
    fileWriteRecovered: (failure) => receiver.forgetFileFailure(failure),
    syncStorage: () => intake.syncNow(),
    sweep: () => timers.sweep(),
  };
}
