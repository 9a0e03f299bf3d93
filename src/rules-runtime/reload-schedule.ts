/**
 * When the rules runtime (runtime.ts) reloads: at once on `reload()` (SIGHUP: the admin says the
 * file is done), or after a watched change once the file has settled, i.e. read the same twice
 * `settleMs` apart (a writer that pauses leaves a prefix that can be valid YAML with fewer
 * rules). Reloads run one at a time, in the order asked. Separate from the reload step
 * (rules-in-force.ts), which does not care what asked for it.
 *
 * Trusts: watch-files.ts for the events. Failure: a watch error is logged (SIGHUP still
 * reloads); a file that never settles is loaded after MAX_SETTLE_ROUNDS.
 */
import { readFile } from "node:fs/promises";
import { describeError } from "../errors.ts";
import { watchFiles } from "../watch-files.ts";
import type { ReloadResult, RulesRuntimeOptions } from "./runtime.ts";

/** Quiet time after the last file event before reloading: editors write in several steps. */
export const RELOAD_DEBOUNCE_MS = 200;
/** A watched change is loaded once two reads this far apart agree (a writer may pause). */
export const RELOAD_SETTLE_MS = 1_000;
/** A file still changing after this many settle rounds is loaded as it is then. */
const MAX_SETTLE_ROUNDS = 10;
/** A reload postponed for want of file descriptors is tried again after this. */
export const POSTPONED_RELOAD_RETRY_MS = 5_000;

/** The reload itself, as the schedule runs it. */
export interface ReloadStep {
  reloadNow(): Promise<ReloadResult>;
  /** What a reload that loads nothing returns: the version in force, unchanged. */
  unchanged(): ReloadResult;
}

export interface ReloadSchedule {
  /** Reloads at once, after the reloads already asked for. */
  reload(): Promise<ReloadResult>;
  /** Stops watching; a settled reload still waiting loads nothing. */
  close(): void;
}

export function createReloadSchedule(opts: RulesRuntimeOptions, step: ReloadStep): ReloadSchedule {
  let chain: Promise<ReloadResult> = Promise.resolve(step.unchanged());
  let retry: ReturnType<typeof setTimeout> | null = null;
  const reloadNow = async (): Promise<ReloadResult> => {
    const result = await step.reloadNow();
    if (!result.ok && result.postponed && !closed && retry === null) {
      retry = setTimeout(() => {
        retry = null;
        chain = chain.then(reloadNow, reloadNow);
      }, opts.postponedRetryMs ?? POSTPONED_RELOAD_RETRY_MS);
      retry.unref();
    }
    return result;
  };
  // Events during a slow write queue one settled reload, not one per event.
  let settledQueued = false;
  let closed = false;
  const reloadSettled = async (): Promise<ReloadResult> => {
    settledQueued = false;
    await untilSettled(opts.file, opts.settleMs ?? RELOAD_SETTLE_MS);
    if (closed) return step.unchanged();
    return reloadNow();
  };
  const onChange = (): void => {
    if (settledQueued) return;
    settledQueued = true;
    chain = chain.then(reloadSettled, reloadSettled);
  };

  const watcher = opts.watch === false ? null : watchFile(opts, onChange);
  return {
    reload: () => (chain = chain.then(reloadNow, reloadNow)),
    close: () => {
      closed = true;
      if (retry) clearTimeout(retry);
      watcher?.close();
    },
  };
}

/** Waits until two reads of the file `ms` apart return the same bytes (or the same failure). */
async function untilSettled(file: string, ms: number): Promise<void> {
  let before = await readOrNull(file);
  for (let round = 0; round < MAX_SETTLE_ROUNDS; round++) {
    await new Promise<void>((resolve) => setTimeout(resolve, ms).unref());
    const after = await readOrNull(file);
    if (before === null ? after === null : after !== null && before.equals(after)) return;
    before = after;
  }
}

async function readOrNull(file: string): Promise<Buffer | null> {
  try {
    return await readFile(file);
  } catch {
    return null; // missing or unreadable: loadOnce says why
  }
}

/** The rules file watched (watch-files.ts: its directory, a symlink's target, ConfigMap swaps). */
function watchFile(opts: RulesRuntimeOptions, onChange: () => void): { close(): void } {
  const close = watchFiles([opts.file], {
    debounceMs: opts.debounceMs ?? RELOAD_DEBOUNCE_MS,
    onChange,
    onError: (err) => opts.logger.warn("watching the rules directory failed; SIGHUP still reloads", { file: opts.file, error: describeError(err) }),
  });
  return { close };
}
