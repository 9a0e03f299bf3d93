/**
 * Wraps a command's `run` so every failure ends as one clear line on stderr and the
 * right exit code (SPEC §1): CliError carries its own code, anything else exits 1.
 * Stack traces only with LOG_LEVEL=debug (`debugRequested` works even when loading the
 * config itself is what failed). An option or argument the command does not define is
 * refused (exit 1) before it runs, instead of being ignored (see argv.ts).
 */
import { resolve } from "node:path";
import { debugRequested, journalStream } from "../config/config.ts";
import { CliError, describeError } from "../errors.ts";
import { stderrIsJournal } from "../log/logger.ts";
import { terminalSafeLine } from "../log/terminal-json.ts";
import { unexpectedArgument } from "./argv.ts";

/**
 * How long a failing command may take to exit once done: long enough for its output to reach a
 * slow pipe, bounded in case something (a worker, a socket) still holds the process open.
 */
const EXIT_GRACE_MS = 10_000;

/** The part of citty's run context used here. */
export interface RunContext<A> {
  args: A;
  rawArgs?: readonly string[];
  cmd?: { args?: unknown };
}

/**
 * Ends the process with `code` once its output is out. `process.exit` right after a big write
 * to a pipe cuts it at 64 KiB under Bun (`rules lint --format json | jq` with many errors).
 */
function exitWith(code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), EXIT_GRACE_MS).unref();
}

/** "mailgw queue retry": the words of the command line before the command's own arguments. */
function commandPath(rawArgs: readonly string[]): string {
  const argv = process.argv.slice(2);
  return ["mailgw", ...argv.slice(0, Math.max(0, argv.length - rawArgs.length))].join(" ");
}

/**
 * Under systemd (stderr the journal stream), every line with priority 3 (err), as serve's own
 * log lines carry theirs: unprefixed, the reason serve refused to start (a DATA_DIR in use, a bad
 * setting) was logged as info, and `journalctl -u mailgw -p err` did not show it.
 */
function asErrorForJournal(text: string): string {
  return stderrIsJournal(journalStream()) ? text.replace(/^(?=.)/gm, "<3>") : text;
}

export function cliAction<A>(run: (args: A, rawArgs: readonly string[]) => Promise<number | void> | number | void) {
  return async (context: RunContext<A>): Promise<void> => {
    try {
      const rawArgs = context.rawArgs ?? [];
      const unexpected = context.cmd ? unexpectedArgument(context.cmd.args, rawArgs) : null;
      if (unexpected) throw new CliError(`${unexpected} (see ${commandPath(rawArgs)} --help)`);
      const code = await run(context.args, rawArgs);
      if (typeof code === "number" && code !== 0) exitWith(code);
    } catch (err) {
      // LOG_LEVEL=debug may come from the --env-file the command was given, too.
      const envFile = (context.args as { "env-file"?: unknown } | undefined)?.["env-file"];
      const debug = debugRequested(typeof envFile === "string" ? { envFile: resolve(envFile) } : {});
      // One line (SPEC §1) whatever a file name or a file's text in it holds.
      const text = `mailgw: ${terminalSafeLine(describeError(err))}\n${debug && err instanceof Error && err.stack ? `${err.stack}\n` : ""}`;
      process.stderr.write(asErrorForJournal(text));
      exitWith(err instanceof CliError ? err.exitCode : 1);
    }
  };
}
