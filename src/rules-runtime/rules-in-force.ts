/**
 * The rules in force and the reload step that replaces them (runtime.ts): load the file, refuse
 * an invalid version or one that takes every domain away, swap, count, log, and record the
 * status in `meta`. Owns the rules and the status together because every reload changes both.
 * Separate from reload-schedule.ts, which decides when this step runs (one at a time).
 *
 * Trusts: rules-load.ts for the outcome of a load. Failure: a refused reload keeps the rules in
 * force, logged once and counted in the status; nothing throws.
 */
import type { RuleSet } from "../rules/types.ts";
import { RELOAD_SETTLE_MS } from "./reload-schedule.ts";
import { loadOnce, refuseLosingDomains, type LoadOutcome } from "./rules-load.ts";
import { recordRulesStatus } from "./rules-status-record.ts";
import { createRulesWarningLog } from "./rules-warnings.ts";
import type { ReloadResult, RulesRuntimeOptions, RulesStatus } from "./runtime.ts";

/** A refusal with the same error within this time after the last is not logged again. */
const REPEATED_REFUSAL_MS = 3 * RELOAD_SETTLE_MS;

export interface RulesInForce {
  current(): RuleSet;
  domains(): readonly string[];
  /** Loads the file and swaps in its rules if they are valid; the caller runs one at a time. */
  reloadNow(): Promise<ReloadResult>;
  /** What a reload that loads nothing returns: the version in force, unchanged. */
  unchanged(): ReloadResult;
  status(): RulesStatus;
}

/** `first`: the start's load, valid. Logs its warnings and records the status before returning. */
export async function startRulesInForce(opts: RulesRuntimeOptions, first: Extract<LoadOutcome, { ok: true }>): Promise<RulesInForce> {
  const { logger } = opts;
  const warnings = createRulesWarningLog(logger, opts.file);
  warnings.log(first.warnings);
  let rules = first.rules;
  const status = firstStatus(opts.file, rules);
  await recordRulesStatus(opts.db, status);

  const refuse = async (error: string): Promise<ReloadResult> => {
    // One edit followed by SIGHUP reaches here twice (the watcher's settled reload, then the
    // signal's): the same refusal moments apart is one event, logged and counted once.
    const repeated = error === status.lastError && status.lastErrorAt !== null && Math.abs(Date.now() - status.lastErrorAt.getTime()) < REPEATED_REFUSAL_MS;
    if (repeated) return { ok: false, error };
    status.reloads.error++;
    status.lastError = error;
    status.lastErrorAt = new Date();
    logger.error("rules reload refused, previous rules stay in force", { file: opts.file, error, version: rules.version });
    await recordRulesStatus(opts.db, status);
    return { ok: false, error };
  };
  const swap = async (next: Extract<LoadOutcome, { ok: true }>): Promise<ReloadResult> => {
    const changed = next.rules.version !== rules.version;
    const recovered = status.lastError !== null;
    rules = next.rules;
    status.reloads.ok++;
    status.lastError = null;
    status.lastErrorAt = null;
    if (changed) {
      status.version = rules.version;
      status.loadedAt = rules.loadedAt;
      logger.info("rules reloaded", { file: opts.file, version: rules.version, rules: rules.rules.length, warnings: next.warnings.length || undefined });
      warnings.log(next.warnings);
    } else if (recovered) {
      // The log's last word on the rules was an error: say that the file is fine again.
      logger.info("rules file valid again; the rules in force are unchanged", { file: opts.file, version: rules.version });
    }
    await recordRulesStatus(opts.db, status);
    return { ok: true, version: rules.version, changed };
  };

  return {
    current: () => rules,
    domains: () => rules.domains,
    reloadNow: async () => {
      const next = refuseLosingDomains(await loadOnce(opts), rules);
      if (!next.ok && next.outOfDescriptors) {
        // Not the file's fault: recorded as refused, it stayed a /healthz warning once the
        // shortage was over, until some later edit. The schedule tries again.
        logger.warn("rules reload postponed: the process is out of file descriptors; trying again shortly", { file: opts.file, error: next.error, version: rules.version });
        return { ok: false, error: next.error, postponed: true };
      }
      return next.ok ? swap(next) : refuse(next.error);
    },
    unchanged: () => ({ ok: true, version: rules.version, changed: false }),
    status: () => ({ ...status, reloads: { ...status.reloads } }),
  };
}

function firstStatus(file: string, rules: RuleSet): RulesStatus {
  return { file, version: rules.version, loadedAt: rules.loadedAt, lastError: null, lastErrorAt: null, reloads: { ok: 0, error: 0 } };
}
