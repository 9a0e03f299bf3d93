/**
 * The rules file's lint warnings in the log (runtime.ts), and which of them the log has said
 * already, so that a reload repeats none of them. Separate because that memory is the only state
 * the warnings need, and the reload step only hands them over.
 *
 * Trusts: the loader's diagnostics. Failure: none.
 */
import type { Logger } from "../log/logger.ts";
import type { Diagnostic } from "../rules/types.ts";

/** Lint warnings logged one per line at a load (the rest are counted; `rules lint` lists them all). */
const MAX_LOGGED_WARNINGS = 5;

export interface RulesWarningLog {
  /** Logs those of a load's `warnings` not logged at the previous load. */
  log(warnings: readonly Diagnostic[]): void;
}

export function createRulesWarningLog(logger: Logger, file: string): RulesWarningLog {
  // What the log has said about the file's warnings, so a reload repeats none of them.
  let warned: ReadonlySet<string> = new Set();
  return {
    log(warnings) {
      warned = logWarnings(logger, file, warnings, warned);
    },
  };
}

/**
 * A warning as the same problem across edits: without its position, nor the line a message
 * names (a shadowing catch-all's), which an added comment line moves.
 */
const warningKey = (w: Diagnostic): string => `${w.code} ${w.message.replace(/\bline \d+/g, "line")}`;

/**
 * Lint warnings (shadowed rules, forward loops, no domains) in the log, as `mailgw rules lint`
 * shows them: only those not logged at the previous load, the first few one per line and the
 * rest counted. A file with 300 shadowed rules logged 300 lines at start and again at every
 * save, a comment edit included. Returns the keys of `warnings`, for the next reload.
 */
function logWarnings(logger: Logger, file: string, warnings: readonly Diagnostic[], logged: ReadonlySet<string>): Set<string> {
  const fresh = warnings.filter((w) => !logged.has(warningKey(w)));
  for (const w of fresh.slice(0, MAX_LOGGED_WARNINGS)) logger.warn("rules warning", { warning: `${w.file}:${w.line}:${w.col}: ${w.message}`, code: w.code });
  if (fresh.length > MAX_LOGGED_WARNINGS) {
    logger.warn("more rules warnings, not logged one by one", { file, not_logged: fresh.length - MAX_LOGGED_WARNINGS, warnings: warnings.length, hint: `mailgw rules lint ${file} lists them all` });
  }
  return new Set(warnings.map(warningKey));
}
