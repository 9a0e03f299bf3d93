/**
 * Hot-reloaded rules (SPEC §3): holds the rules in force and swaps them atomically when a
 * valid new version of RULES_FILE appears. A session classifies with whatever
 * `current()` returns at that moment; a swap never affects a classification in progress.
 *
 * Watching (reload-schedule.ts, watch-files.ts): the DIRECTORY of the file (editors and `mv`
 * replace the file), and for a symlinked file its target's directory and the `..data` swaps of a Kubernetes ConfigMap;
 * events debounced, then the file must read the same twice RELOAD_SETTLE_MS apart before it is
 * loaded: a writer that pauses (a slow copy, scp, `cat >` with a paste) leaves a prefix that can
 * be valid YAML with fewer rules, and loading it would silently drop the rest until the write
 * ends. SIGHUP also calls `reload()` (wired by serve), which loads at once: the admin says the
 * file is done. Reloads run one at a time.
 * Failure: an invalid or unreadable file is refused with a logged error; the last good
 * rules stay in force and `status().lastError` says why. At start, a missing or invalid file
 * throws a CliError naming it (serve exits 1).
 * Each reload is recorded in `meta` (rules-status-record.ts: rules.version, rules.loaded_at,
 * rules.last_error, rules.reloads_ok, rules.reloads_error) for the stats page and metrics.
 */
import type { Database } from "bun:sqlite";
import { accessSync, constants } from "node:fs";
import { CliError, describeError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import type { ParseResult, RuleSet } from "../rules/types.ts";
import { createReloadSchedule } from "./reload-schedule.ts";
import { startRulesInForce } from "./rules-in-force.ts";
import { loadOnce } from "./rules-load.ts";

export type RulesLoader = (path: string) => ParseResult | Promise<ParseResult>;

/**
 * `postponed`: the file could not be read for want of file descriptors (a shortage, not the
 * file): nothing is recorded as refused, and the schedule tries again.
 */
export type ReloadResult = { ok: true; version: string; changed: boolean } | { ok: false; error: string; postponed?: true };

export interface RulesStatus {
  file: string;
  version: string;
  loadedAt: Date;
  /** Why the last reload was refused; null once a reload succeeds again. */
  lastError: string | null;
  lastErrorAt: Date | null;
  reloads: { ok: number; error: number };
}

export interface RulesRuntime {
  current(): RuleSet;
  domains(): readonly string[];
  reload(): Promise<ReloadResult>;
  status(): RulesStatus;
  close(): void;
}

export { RELOAD_DEBOUNCE_MS, RELOAD_SETTLE_MS } from "./reload-schedule.ts";
export { describeDiagnostics } from "./rules-load.ts";

export interface RulesRuntimeOptions {
  file: string;
  /** Default: `loadRules` from rules/load.ts (tests may pass their own). */
  load?: RulesLoader;
  logger: Logger;
  /** Where reloads are recorded; optional for commands that do not keep state. */
  db?: Database;
  /** Watch the file's directory (default true). */
  watch?: boolean;
  debounceMs?: number;
  settleMs?: number;
  /** Default reload-schedule.ts POSTPONED_RELOAD_RETRY_MS (tests shorten it). */
  postponedRetryMs?: number;
}

/**
 * A missing file is told to be created; one this user may not reach (a directory made 0700
 * for the secrets beside it, under systemd's DynamicUser) is told so, not "does not exist".
 */
function requireReachable(file: string): void {
  try {
    accessSync(file, constants.R_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") throw new CliError(`RULES_FILE ${file} does not exist: create it (see README) or set RULES_FILE`);
    throw new CliError(`RULES_FILE ${file} cannot be read by this user (${code ?? describeError(err)}): make it and its directories readable by the user mailgw runs as`);
  }
}

export async function startRulesRuntime(opts: RulesRuntimeOptions): Promise<RulesRuntime> {
  requireReachable(opts.file);
  const first = await loadOnce(opts);
  if (!first.ok) throw new CliError(`RULES_FILE ${opts.file} is invalid: ${first.error}`);
  const inForce = await startRulesInForce(opts, first);
  const schedule = createReloadSchedule(opts, inForce);
  return {
    current: inForce.current,
    domains: inForce.domains,
    reload: schedule.reload,
    status: inForce.status,
    close: schedule.close,
  };
}
