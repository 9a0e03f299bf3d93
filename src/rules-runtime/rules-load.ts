/**
 * One read of the rules file into the rules or the error that refuses them (runtime.ts): the
 * loader's diagnostics cut to an error line, a throw turned into an error, and a version that
 * takes every domain away refused. Separate from the runtime's state: nothing here keeps any.
 *
 * Trusts: nothing in the file (rules/load.ts validates it). Failure: returned, never thrown.
 */
import { existsSync } from "node:fs";
import { describeError } from "../errors.ts";
import { loadRules, UNREADABLE_CODE } from "../rules/load.ts";
import type { Diagnostic, RuleSet } from "../rules/types.ts";
import type { RulesRuntimeOptions } from "./runtime.ts";

/** Diagnostics quoted in one error line (the rest are counted). */
const MAX_QUOTED_DIAGNOSTICS = 3;
/** Longest diagnostic quoted in an error line (`file:line:col: message`). */
const MAX_QUOTED_DIAGNOSTIC_CHARS = 300;

/** `outOfDescriptors`: the file could not be read because the process had no descriptor free. */
export type LoadOutcome = { ok: true; rules: RuleSet; warnings: Diagnostic[] } | { ok: false; error: string; outOfDescriptors?: true };

/** What rules/load.ts says of a file it could not open for want of descriptors (EMFILE, ENFILE). */
const OUT_OF_DESCRIPTORS = /^cannot read rules file \((EMFILE|ENFILE)\)$/;

/**
 * A reload that would take every domain away is refused: every RCPT would get 550 (a
 * permanent bounce for real senders), and a half-written or wrong file is the usual cause.
 * Starting with no domains is still allowed (lint and the start-up log warn).
 */
export function refuseLosingDomains(next: LoadOutcome, current: RuleSet): LoadOutcome {
  if (!next.ok || next.rules.domains.length > 0 || current.domains.length === 0) return next;
  return { ok: false, error: "the new rules list no domains: every recipient would be refused (550 5.7.1); add domains: [...] (restart serve to run with none)" };
}

export async function loadOnce(opts: Pick<RulesRuntimeOptions, "file" | "load">): Promise<LoadOutcome> {
  try {
    if (!existsSync(opts.file)) return { ok: false, error: `${opts.file}: file does not exist` };
    const result = await (opts.load ?? loadRules)(opts.file);
    if (result.ok) return { ok: true, rules: result.rules, warnings: result.diagnostics.filter((d) => d.severity === "warning") };
    const error = describeDiagnostics(result.diagnostics);
    const short = result.diagnostics.some((d) => d.code === UNREADABLE_CODE && OUT_OF_DESCRIPTORS.test(d.message));
    return short ? { ok: false, error, outOfDescriptors: true } : { ok: false, error };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException | null)?.code;
    const error = `${opts.file}: ${describeError(err)}`;
    return code === "EMFILE" || code === "ENFILE" ? { ok: false, error, outOfDescriptors: true } : { ok: false, error };
  }
}

/**
 * The first errors, each cut to MAX_QUOTED_DIAGNOSTIC_CHARS, the rest counted; when anything was
 * left out, where to see it all. A message quotes what the file says (a 200,000-character rule
 * name made a 600 KB error line, kept as is on the stats page too).
 */
export function describeDiagnostics(diagnostics: readonly Diagnostic[]): string {
  const errors = diagnostics.filter((d) => d.severity === "error");
  const quoted = errors.slice(0, MAX_QUOTED_DIAGNOSTICS).map((d) => `${d.file}:${d.line}:${d.col}: ${d.message}`);
  const shown = quoted.map((q) => (q.length > MAX_QUOTED_DIAGNOSTIC_CHARS ? `${q.slice(0, MAX_QUOTED_DIAGNOSTIC_CHARS)}…` : q));
  const more = errors.length - shown.length;
  const cut = more > 0 || shown.some((q, i) => q !== quoted[i]);
  const file = errors[0]?.file;
  return shown.join("; ") + (more > 0 ? `; and ${more} more error(s)` : "") + (cut && file ? ` (mailgw rules lint ${file} lists them in full)` : "") || "invalid rules file";
}
