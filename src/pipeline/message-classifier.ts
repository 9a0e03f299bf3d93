/**
 * The parse and classify step of the intake: a received message's facts (only what the rules in
 * force read — rules/fact-needs.ts), its SPF/DKIM/DMARC results when a rule reads them, then the
 * decision. Owns the parse workers (started by recover(), closed last) and the choice of where a
 * message is parsed: in-thread from memory, or in a worker from memory or from its spool file.
 * Separate from the receive path: it only reads the message, never stores anything.
 */
import type { Config } from "../config/config.ts";
import type { Logger } from "../log/logger.ts";
import { readFileBytes } from "../read-file.ts";
import { authenticate, type AuthResults } from "../parse/authenticate.ts";
import { extractFacts } from "../parse/extract.ts";
import { HEADER_SECTION_BYTES } from "../parse/limits.ts";
import { PART_CHARSET_SEARCH_BYTES } from "../parse/header-text.ts";
import { ParsePool } from "../parse/parse-pool.ts";
import { classify } from "../rules/classify.ts";
import { factNeeds } from "../rules/fact-needs.ts";
import type { RulesRuntime } from "../rules-runtime/runtime.ts";
import type { IncomingFile } from "../spool/incoming-file.ts";
import type { Decision, Envelope, MessageFacts } from "../types.ts";

/**
 * Deadline for SPF/DKIM/DMARC (DNS) per message: a slow or hostile DNS zone cannot hold
 * a session longer; missing results become temperror. Only run when a rule looks at them.
 */
const AUTH_TIMEOUT_MS = 5000;
/**
 * Messages above this size are parsed in a parse worker even when only the header block is
 * read (below it, and for header-only rules, the in-thread parse costs less than the hand-over).
 */
const WORKER_PARSE_MIN_BYTES = 1024 * 1024;
/** Bytes of a message in parts joined for a header-only parse (limits.ts HEADER_SECTION_BYTES). */
export const HEADER_PREFIX_BYTES = HEADER_SECTION_BYTES;

/**
 * What a header-only parse of a spilled message reads: its header section, and when that has
 * 8-bit bytes, the start of the body too, read back from the spool file. Raw 8-bit header bytes
 * with no charset declared are read in the first text part's charset (parse/header-text.ts),
 * found there: with the header section alone, a raw Shift_JIS or GBK subject of a multipart
 * message over 64 KB was windows-1252 mojibake to serve's header-only rules (the starter rules)
 * and the text `mailgw test` and a full parse show, so `subject contains 見積` decided otherwise.
 */
async function headerOnlyBytes(file: IncomingFile): Promise<Uint8Array> {
  const section = file.headerSection(HEADER_PREFIX_BYTES);
  if (section.byteLength >= Math.min(file.size, HEADER_SECTION_BYTES) || !hasEightBit(section)) return section;
  const end = Math.min(file.size, section.byteLength + PART_CHARSET_SEARCH_BYTES, HEADER_SECTION_BYTES);
  return new Uint8Array(await Bun.file(file.path).slice(0, end).arrayBuffer());
}

function hasEightBit(bytes: Uint8Array): boolean {
  for (const byte of bytes) if (byte >= 0x80) return true;
  return false;
}

/** Where a parse reads the message: its bytes in memory, or its spool file. */
type ParseSource = { kind: "bytes"; bytes: Uint8Array } | { kind: "file"; path: string };

/** A classified message: its facts, the decision, what the regex budget cut, the auth results seen. */
export interface Classified {
  facts: MessageFacts;
  decision: Decision;
  unevaluated?: string[];
  auth?: string;
}

export interface MessageClassifierDeps {
  config: Config;
  logger: Logger;
  rules: RulesRuntime;
  /** Called before a message's SPF/DKIM/DMARC checks. */
  authChecksNeeded?: () => void;
}

export class MessageClassifier {
  /** Parse workers (started by startWorkers()); null: parse in-thread. */
  private parsePool: ParsePool | null = null;

  constructor(private readonly deps: MessageClassifierDeps) {}

  /** Starts the parse workers; without them every message is parsed in-thread. */
  async startWorkers(): Promise<void> {
    const { logger } = this.deps;
    const pool = await ParsePool.start();
    if (pool.pool) {
      this.parsePool = pool.pool;
      logger.info("messages parsed in parse workers", { workers: pool.pool.size });
    } else logger.warn("parse workers did not start, parsing in-thread", { reason: pool.reason });
  }

  async close(): Promise<void> {
    await this.parsePool?.close();
  }

  /**
   * Classifies the message in `file`. Header-only rules: the in-memory prefix (the whole message
   * when small) is parsed. Rules that read the body: the bytes in memory when the whole
   * message is there, else the parse worker reads the spool file. Authentication checks need
   * the whole message in memory (read back from the file when big).
   */
  async classify(file: IncomingFile, envelope: Envelope): Promise<Classified> {
    const { config, rules } = this.deps;
    const ruleSet = rules.current();
    const needs = factNeeds(ruleSet);
    const size = file.size;
    let parsed: MessageFacts;
    let authResults: AuthResults | undefined;
    if (!needs.content && !needs.auth) {
      // A spilled message's body is on disk: only its header section is parsed (not joined).
      const bytes = file.keptInMemory ? file.bytes() : null;
      parsed = await this.parse({ kind: "bytes", bytes: bytes ?? await headerOnlyBytes(file) }, envelope, size, false);
    } else {
      const inMemory = file.bytes();
      if (needs.auth) this.deps.authChecksNeeded?.();
      const raw = needs.auth ? (inMemory ?? await readFileBytes(file.path)) : null;
      // The authentication checks read the bytes meanwhile, and a message kept in memory still
      // has to be written to the spool: the worker then gets a copy.
      const auth = raw ? authenticate(raw, envelope, { timeoutMs: AUTH_TIMEOUT_MS, mta: config.smtp.hostname }) : undefined;
      const copy = raw !== null || file.keptInMemory;
      const source: ParseSource = inMemory ? { kind: "bytes", bytes: copy ? new Uint8Array(inMemory) : inMemory } : { kind: "file", path: file.path };
      const [result, authDone] = await Promise.all([this.parse(source, envelope, size, needs.content), auth]);
      parsed = result;
      authResults = authDone;
    }
    file.forgetPrefix();
    const facts: MessageFacts = { ...parsed, ...authResults, size };
    const { decision, unevaluated } = classify(facts, ruleSet, { trace: false });
    // Which results the rules saw: `mailgw test` cannot tell afterwards (it does no DNS).
    const auth = authResults ? `spf=${authResults.spf} dkim=${authResults.dkim} dmarc=${authResults.dmarc}` : undefined;
    return { facts, decision, ...(unevaluated ? { unevaluated } : {}), ...(auth ? { auth } : {}) };
  }

  /**
   * Facts of a message, from its bytes in memory or from its spool file: in a parse worker when
   * the rules read the body or the message is big, else in-thread. A worker that fails on this
   * message throws its ParseWorkerError (the receive path answers 451).
   */
  private async parse(source: ParseSource, envelope: Envelope, size: number, content: boolean): Promise<MessageFacts> {
    const pool = this.parsePool;
    if (pool === null || !pool.usable || (!content && size <= WORKER_PARSE_MIN_BYTES)) {
      const raw = source.kind === "bytes" ? source.bytes : await readFileBytes(source.path);
      return extractFacts(raw, envelope, { content });
    }
    const outcome = source.kind === "bytes"
      ? await pool.parse(source.bytes, envelope, { content })
      : await pool.parseFile(source.path, envelope, { content });
    return outcome.facts;
  }
}
