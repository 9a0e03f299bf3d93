/**
 * Wraps a command's `run` so every failure ends as one clear line on stderr and the
 * right exit code (SPEC §1): CliError carries its own code, anything else exits 1.
 * Stack traces only with LOG_LEVEL=debug (`debugRequested` works even when loading the
 * config itself is what failed).
 */
import { debugRequested } from "../config/config.ts";
import { CliError, describeError } from "../errors.ts";

export function cliAction<A>(run: (args: A) => Promise<number | void> | number | void) {
  return async ({ args }: { args: A }): Promise<void> => {
    try {
      const code = await run(args);
      if (typeof code === "number" && code !== 0) process.exit(code);
    } catch (err) {
      const debug = debugRequested();
      process.stderr.write(`mailgw: ${describeError(err)}\n`);
      if (debug && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
      process.exit(err instanceof CliError ? err.exitCode : 1);
    }
  };
}
