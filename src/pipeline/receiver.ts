/**
 * The pipeline's MessageSink side: one message's way from its spool file to the SMTP reply.
 * The file is opened (openIncoming), ended, classified (message-classifier.ts), then acted on:
 * reject → file removed, row recorded, 550 5.7.1; otherwise the file (or its archive entry),
 * row and deliveries made durable in the intake's group commit (act/intake.ts), the reply, and
 * the post-250 work scheduled (act/finish.ts). Owns the outcome of the last commit, which
 * /healthz reports. Separate from the composition: this is the per-message hot path, and the
 * start-up and shut-down around it are not.
 *
 * receiveFile stays one async function (the act step is not split into an async function of its
 * own): each extra async step would cost every message a promise and microtasks.
 */
import { join } from "node:path";
import type { Config } from "../config/config.ts";
import { describeError, RejectedMessage, SmtpError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import { ParseWorkerError } from "../parse/parse-pool.ts";
import { parseGaveUp } from "../parse/header-readings.ts";
import { REGEX_BUDGET_MS } from "../rules/matchers.ts";
import { archiveRelativePath } from "../act/archive.ts";
import { FORWARD_LOOP_TEXT, forwardWouldLoop, RELAY_HOPCOUNT_LIMIT } from "../act/relay-hops.ts";
import { tooBigForRelay } from "../queue/relay-size-limit.ts";
import type { Finisher } from "../act/finish.ts";
import { deliveriesFor, messageRow } from "../act/decision-rows.ts";
import type { Intake, IntakeEntry } from "../act/intake.ts";
import { newMessageId } from "../spool/ids.ts";
import { IncomingFile } from "../spool/incoming-file.ts";
import type { Spool } from "../spool/spool.ts";
import { IntakeRowsError } from "../spool/spool-flusher.ts";
import type { Decision, Envelope, MessageFacts, ReceiveOutcome } from "../types.ts";
import { shuttingDown, type Admission } from "./admission.ts";
import type { DurabilityMode } from "./durability-mode.ts";
import { HEADER_PREFIX_BYTES, type Classified, type MessageClassifier } from "./message-classifier.ts";

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

export interface ReceiverDeps {
  config: Config;
  logger: Logger;
  spool: Spool;
  intake: Intake;
  finisher: Finisher;
  classifier: MessageClassifier;
  durability: DurabilityMode;
  admission: Admission;
  now: () => number;
  /** Whether a relay is configured now: new forwards are queued for it, or held without one. */
  relayConfigured: () => boolean;
  /** The largest message the relay takes, as it advertised it (queue/relay-size-limit.ts); null: unknown. */
  relaySizeLimit?: () => number | null;
  /** Called after a message of BIG_MESSAGE_BYTES or more, before its parse. */
  afterBigMessage?: () => void;
}

export class Receiver {
  private lastCommitFailure: string | null = null;
  /** The same for the message's file (spool or archive: a full disk, an unusable day directory). */
  private lastFileFailure: string | null = null;

  constructor(private readonly deps: ReceiverDeps) {}

  // The three entry points are arrow properties: the pipeline hands them out as they are, with
  // no wrapper call per message.

  /** MessageSink: the caller keeps its bytes (they are written to a new spool file). */
  readonly receive = (raw: Uint8Array, envelope: Envelope): Promise<ReceiveOutcome> => {
    return this.deps.admission.run(async () => {
      const file = await this.openIncoming();
      file.write(raw);
      return this.receiveFile(file, envelope);
    });
  };

  /** From smtp/: `file` was written as the message arrived; the pipeline installs or removes it. */
  readonly receiveOwned = (file: IncomingFile, envelope: Envelope): Promise<ReceiveOutcome> => {
    const { admission } = this.deps;
    if (admission.closed) void file.abort();
    return admission.run(() => this.receiveFile(file, envelope));
  };

  /** A new message's spool file (`<id>.tmp`), for the SMTP layer to write DATA into as it arrives. */
  readonly openIncoming = async (): Promise<IncomingFile> => {
    const { admission, now, spool, logger } = this.deps;
    if (admission.closed) throw shuttingDown();
    const receivedAt = now();
    try {
      return await IncomingFile.create(spool, newMessageId(receivedAt), receivedAt, HEADER_PREFIX_BYTES);
    } catch (err) {
      logger.error("creating a spool file failed", { error: describeError(err) });
      throw SmtpError.temporaryLogged(err);
    }
  };

  /**
   * Why the last commit of a received message's rows failed, or null once a later one succeeded.
   */
  get databaseWriteFailure(): string | null {
    return this.lastCommitFailure;
  }

  /** A write went through since `failure` (a health check's probe): forgotten, unless a newer one replaced it. */
  forgetCommitFailure(failure: string): void {
    if (this.lastCommitFailure === failure) this.lastCommitFailure = null;
  }

  /** A file could be written since `failure` (a health check's probe): forgotten, unless a newer one replaced it. */
  forgetFileFailure(failure: string): void {
    if (this.lastFileFailure === failure) this.lastFileFailure = null;
  }

  /** Why writing the last received message's file failed (it got 451), or null once one succeeded. */
  get fileWriteFailure(): string | null {
    return this.lastFileFailure;
  }

  private async receiveFile(file: IncomingFile, envelope: Envelope): Promise<ReceiveOutcome> {
    const { config, logger, intake, finisher, durability, now, relayConfigured } = this.deps;
    const { id, receivedAt } = file;
    let classified: Classified;
    try {
      await file.end();
      if (file.size >= BIG_MESSAGE_BYTES) this.deps.afterBigMessage?.();
      classified = await this.deps.classifier.classify(file, envelope);
    } catch (err) {
      await file.abort();
      this.logClassifyFailure(id, err);
      throw SmtpError.temporaryLogged(err);
    }
    const { facts, decision, unevaluated, auth } = classified;
    if (unevaluated) this.warnUnevaluated(id, unevaluated, decision);
    if (decision.action === "reject") {
      await file.abort();
      return this.reject(id, receivedAt, facts, decision, envelope.firstInSession === true, auth);
    }
    if (decision.action === "forward" && tooBigForRelay(file.size, this.deps.relaySizeLimit?.() ?? null)) {
      // Refused as an oversized message is (nothing stored): a 250 would end in the relay's 552.
      const limit = this.deps.relaySizeLimit?.() ?? 0;
      await file.abort();
      logger.info("message refused: too big for the relay its rule forwards through", { id, rule: decision.rule, size: file.size, relay_size_bytes: limit });
      throw new SmtpError(552, "5.3.4", `Message too big for the relay it is forwarded through (at most ${limit} bytes)`);
    }
    if (decision.action === "forward" && forwardWouldLoop(envelope.receivedHeaders ?? 0)) {
      // Refused as serve's loop check refuses (nothing stored): a 250 would end in the relay's 554.
      await file.abort();
      logger.info("message refused: the relay would refuse the forward as a mail loop", { id, rule: decision.rule, received_headers: envelope.receivedHeaders, relay_hopcount_limit: RELAY_HOPCOUNT_LIMIT });
      throw new SmtpError(554, "5.4.6", FORWARD_LOOP_TEXT);
    }
    // Archive only: the writer thread puts the file straight into the archive (no spool file,
    // no post-250 work). Otherwise the spool file stays for the archive copy or the deliveries.
    const direct = durability.directArchive && decision.archive && decision.action === "archive";
    const finishLater = decision.archive && !direct;
    const row = messageRow(id, receivedAt, facts, decision, finishLater ? "spooled" : "done");
    row.countsSession = envelope.firstInSession === true;
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
      this.lastCommitFailure = null;
      this.lastFileFailure = null;
    } catch (err) {
      if (finishLater) finisher.unreserve(id);
      if (err instanceof IntakeRowsError) this.lastCommitFailure = describeError(err);
      else this.lastFileFailure = describeError(err);
      logger.error("storing message failed, answered 451", { id, error: describeError(err) });
      throw SmtpError.temporaryLogged(err);
    }
    this.logStored(id, decision, facts);
    if (finishLater) finisher.schedule({ id, receivedAt, archive: decision.archive });
    return auth ? { id, decision, auth } : { id, decision };
  }

  private async reject(id: string, receivedAt: number, facts: MessageFacts, decision: Decision, countsSession: boolean, auth?: string): Promise<never> {
    const { intake, logger } = this.deps;
    const row = messageRow(id, receivedAt, facts, decision, "done");
    row.countsSession = countsSession;
    const recorded = await intake.commit({ row, file: null, deliveries: [] }).then(
      () => true,
      (err: unknown) => {
        logger.error("recording a rejected message failed", { id, error: describeError(err) });
        return false;
      },
    );
    logger.info("message rejected", { id, rule: decision.rule, category: decision.category, size: facts.size, auth });
    const detail = new RejectedMessage(id, decision.rule, decision.category, recorded, auth);
    throw new SmtpError(550, "5.7.1", publicRejectText(decision.rejectMessage), detail);
  }

  private logClassifyFailure(id: string, err: unknown): void {
    const { logger } = this.deps;
    if (err instanceof ParseWorkerError) {
      // As Postfix does when a content filter fails (milter_default_action=tempfail, a
      // smtpd_proxy_filter timeout): the sender retries. Classified on the envelope alone, as
      // it was, the message got the default action past every subject, from, header, body and
      // attachment rule (an .exe forwarded), and a rule with `not: true` matched the empty fields.
      logger.error("parsing the message failed: answered 451 (the sender retries later), no rule applied", { id, error: describeError(err) });
    } else logger.error("classification failed", { id, error: describeError(err) });
  }

  private warnUnevaluated(id: string, unevaluated: string[], decision: Decision): void {
    this.deps.logger.warn("rule regexes used up the message's time budget: these rules were not evaluated and did not match (a regex that backtracks catastrophically?)", {
      id, budget_ms: REGEX_BUDGET_MS, rules: unevaluated.slice(0, LOGGED_UNEVALUATED_RULES_MAX),
      rules_total: unevaluated.length > LOGGED_UNEVALUATED_RULES_MAX ? unevaluated.length : undefined, decision: decision.action, category: decision.category,
    });
  }

  private logStored(id: string, decision: Decision, facts: MessageFacts): void {
    // The session's log line (smtp/session-log.ts) reports every message at info level; this one
    // adds the per-message detail at debug, or at warn when the parser gave up on part of the
    // content (not when it only read a header two ways: parseGaveUp).
    const stored = {
      id, action: decision.action, rule: decision.rule, category: decision.category, size: facts.size,
      archive: decision.archive, parse_error: facts.parseError,
    };
    if (parseGaveUp(facts.parseError)) this.deps.logger.warn("message stored", stored);
    else this.deps.logger.debug("message stored", stored);
  }
}

/** The rule's reject text as one safe reply line (no control characters, bounded). */
export function publicRejectText(message: string | null): string {
  const text = (message ?? "").replace(/[\x00-\x1f\x7f]+/g, " ").trim().slice(0, MAX_REJECT_TEXT_CHARS);
  return text || DEFAULT_REJECT_TEXT;
}
