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
 * crashes or times out on a message → 451 as well (see receiveFile).
 * Start-up: `recover()` before SMTP listens (finishes what a crash left, starts the
 * background retention and retry timers). `close()` waits for work in flight.
 */
import type { Database } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Config } from "./config/config.ts";
import { describeError, RejectedMessage, SmtpError } from "./errors.ts";
import type { Logger } from "./log/logger.ts";
import { ParseWorkerError } from "./parse/parse-pool.ts";
import { REGEX_BUDGET_MS } from "./rules/matchers.ts";
import type { RulesRuntime } from "./rules-runtime/runtime.ts";
import { Archive, archiveRelativePath } from "./act/archive.ts";
import { Finisher } from "./act/finish.ts";
import { deliveriesFor, messageRow } from "./act/decision-rows.ts";
import { Intake, type IntakeEntry, type IntakeStats } from "./act/intake.ts";
import { newMessageId } from "./spool/ids.ts";
import { recoverSpool, type RecoveryReport } from "./spool/recovery.ts";
import { IncomingFile } from "./spool/incoming-file.ts";
import { Spool } from "./spool/spool.ts";
import { IntakeRowsError } from "./spool/spool-flusher.ts";
import { WalSync } from "./spool/wal-sync.ts";
import type { Decision, Envelope, MessageFacts, MessageSink, ReceiveOutcome } from "./types.ts";
import { Admission, shuttingDown } from "./pipeline/admission.ts";
import { BackgroundTimers } from "./pipeline/background-timers.ts";
import { DurabilityMode } from "./pipeline/durability-mode.ts";
import { HEADER_PREFIX_BYTES, MessageClassifier, type Classified } from "./pipeline/message-classifier.ts";

/** Longest reject text sent to a client (after `550 5.7.1 `): one SMTP reply line. */
const MAX_REJECT_TEXT_CHARS = 400;
const DEFAULT_REJECT_TEXT = "Message rejected";
/**
 * Rules named in a message's regex-budget warning; the rest are counted. Named all, 2,000 rules
 * after a slow regex made an 86 KB line for every message that hit it (10,000: ~650 KB).
 */
const LOGGED_UNEVALUATED_RULES_MAX = 20;
/**
 * After receiving a message this big, `afterBigMessage` runs before the message is parsed: its
 * socket chunks (dead once written to the spool file, two copies of every byte through
 * smtp-server) would otherwise still be in memory when the parse worker's memory peaks. An
 * async GC request comes too late to matter.
 */
const BIG_MESSAGE_BYTES = 8 * 1024 * 1024;

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
  /**
   * What the minute timer runs: releases held-back deliveries and finishes messages left
   * unfinished (created or received over a minute ago). Resolves with the messages scheduled.
   */
  sweep(): Promise<number>;
}

export function createPipeline(deps: PipelineDeps): Pipeline {
  const { config, db, logger, rules } = deps;
  const now = deps.now ?? Date.now;
  const relayConfigured = deps.relayConfigured ?? ((): boolean => config.relay !== null);
  const spool = new Spool(config.dataDir);
  let databaseWriteFailure: string | null = null;
  mkdirSync(spool.orphanDir, { recursive: true });
  const archive = new Archive(config.dataDir);
  const wal = new WalSync(db);
  const intake = new Intake(db, spool, wal);
  const finisher = new Finisher(db, spool, archive, logger, wal);
  const durability = new DurabilityMode({ db, spool, wal, intake, archive, logger });
  const timers = new BackgroundTimers({ config, db, logger, finisher, archive, now });
  const classifier = new MessageClassifier({ config, logger, rules, authChecksNeeded: deps.authChecksNeeded });
  const admission = new Admission();

  /** MessageSink: the caller keeps its bytes (they are written to a new spool file). */
  function receive(raw: Uint8Array, envelope: Envelope): Promise<ReceiveOutcome> {
    return admission.run(async () => {
      const file = await openIncoming();
      file.write(raw);
      return receiveFile(file, envelope);
    });
  }

  /** From smtp/: `file` was written as the message arrived; the pipeline installs or removes it. */
  function receiveOwned(file: IncomingFile, envelope: Envelope): Promise<ReceiveOutcome> {
    if (admission.closed) void file.abort();
    return admission.run(() => receiveFile(file, envelope));
  }

  /** A new message's spool file (`<id>.tmp`), for the SMTP layer to write DATA into as it arrives. */
  async function openIncoming(): Promise<IncomingFile> {
    if (admission.closed) throw shuttingDown();
    const receivedAt = now();
    try {
      return await IncomingFile.create(spool, newMessageId(receivedAt), receivedAt, HEADER_PREFIX_BYTES);
    } catch (err) {
      logger.error("creating a spool file failed", { error: describeError(err) });
      throw SmtpError.temporaryLogged(err);
    }
  }

  async function receiveFile(file: IncomingFile, envelope: Envelope): Promise<ReceiveOutcome> {
    const { id, receivedAt } = file;
    let classified: Classified;
    try {
      await file.end();
      if (file.size >= BIG_MESSAGE_BYTES) deps.afterBigMessage?.();
      classified = await classifier.classify(file, envelope);
    } catch (err) {
      await file.abort();
      if (err instanceof ParseWorkerError) {
        // As Postfix does when a content filter fails (milter_default_action=tempfail, a
        // smtpd_proxy_filter timeout): the sender retries. Classified on the envelope alone, as
        // it was, the message got the default action past every subject, from, header, body and
        // attachment rule (an .exe forwarded), and a rule with `not: true` matched the empty fields.
        logger.error("parsing the message failed: answered 451 (the sender retries later), no rule applied", { id, error: describeError(err) });
      } else logger.error("classification failed", { id, error: describeError(err) });
      throw SmtpError.temporaryLogged(err);
    }
    const { facts, decision, unevaluated, auth } = classified;
    if (unevaluated) {
      logger.warn("rule regexes used up the message's time budget: these rules were not evaluated and did not match (a regex that backtracks catastrophically?)", {
        id, budget_ms: REGEX_BUDGET_MS, rules: unevaluated.slice(0, LOGGED_UNEVALUATED_RULES_MAX),
        rules_total: unevaluated.length > LOGGED_UNEVALUATED_RULES_MAX ? unevaluated.length : undefined, decision: decision.action, category: decision.category,
      });
    }
    if (decision.action === "reject") {
      await file.abort();
      return reject(id, receivedAt, facts, decision, auth);
    }
    // Archive only: the writer thread puts the file straight into the archive (no spool file,
    // no post-250 work). Otherwise the spool file stays for the archive copy or the deliveries.
    const direct = durability.directArchive && decision.archive && decision.action === "archive";
    const finishLater = decision.archive && !direct;
    const row = messageRow(id, receivedAt, facts, decision, finishLater ? "spooled" : "done");
    if (direct) row.archivePath = archiveRelativePath(id, receivedAt);
    const keepBytes = decision.archive || decision.action === "forward" || decision.action === "webhook";
    if (!keepBytes) await file.abort();
    const entry: IntakeEntry = {
      row, file: keepBytes ? file : null, deliveries: deliveriesFor(row, decision, relayConfigured(), now()),
      finalPath: row.archivePath ? join(config.dataDir, row.archivePath) : null,
    };
    if (finishLater) finisher.reserve(id);
    try {
      await intake.commit(entry);
      databaseWriteFailure = null;
    } catch (err) {
      if (finishLater) finisher.unreserve(id);
      if (err instanceof IntakeRowsError) databaseWriteFailure = describeError(err);
      logger.error("storing message failed, answered 451", { id, error: describeError(err) });
      throw SmtpError.temporaryLogged(err);
    }
    // The session's log line (smtp/session-log.ts) reports every message at info level; this one
    // adds the per-message detail at debug, or at warn when the parser gave up on the content.
    const stored = {
      id, action: decision.action, rule: decision.rule, category: decision.category, size: facts.size,
      archive: decision.archive, parse_error: facts.parseError,
    };
    if (facts.parseError) logger.warn("message stored", stored);
    else logger.debug("message stored", stored);
    if (finishLater) finisher.schedule({ id, receivedAt, archive: decision.archive });
    return auth ? { id, decision, auth } : { id, decision };
  }

  async function reject(id: string, receivedAt: number, facts: MessageFacts, decision: Decision, auth?: string): Promise<never> {
    const row = messageRow(id, receivedAt, facts, decision, "done");
    await intake.commit({ row, file: null, deliveries: [] }).catch((err: unknown) => {
      logger.error("recording a rejected message failed", { id, error: describeError(err) });
    });
    logger.info("message rejected", { id, rule: decision.rule, category: decision.category, size: facts.size, auth });
    throw new SmtpError(550, "5.7.1", publicRejectText(decision.rejectMessage), new RejectedMessage(id, decision.rule, decision.category, auth));
  }

  return {
    receive,
    receiveOwned,
    openIncoming,
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
    databaseWriteFailure: () => databaseWriteFailure,
    sweep: () => timers.sweep(),
  };
}

/** The rule's reject text as one safe reply line (no control characters, bounded). */
export function publicRejectText(message: string | null): string {
  const text = (message ?? "").replace(/[\x00-\x1f\x7f]+/g, " ").trim().slice(0, MAX_REJECT_TEXT_CHARS);
  return text || DEFAULT_REJECT_TEXT;
}
