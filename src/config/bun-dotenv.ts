/**
 * Bun run from source (`bun src/main.ts …`) copies ./.env into process.env by itself unless it
 * is started with --no-env-file. mailgw reads .env itself and ranks the environment above it
 * (src/config), so that copy pins the start-up values: an edited .env (a fixed relay password)
 * followed by SIGHUP changed nothing, and a cwd .env outranked `--env-file`. `npm start`,
 * `npm run mailgw` and a source-mode systemd unit pass the flag; the compiled executable is
 * built without the autoload (scripts/build.ts). This module names the flag and warns when a
 * hand-typed `bun src/main.ts serve` ran without it.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";

/** Bun's flag that turns its own .env loading off. */
export const NO_ENV_FILE_FLAG = "--no-env-file";

/** Entry-point prefixes of a `bun build --compile` executable (Bun.main inside it). */
const COMPILED_MAIN_PREFIXES = ["/$bunfs/", "B:/~BUN/", "B:\\~BUN\\"];

export function isCompiled(mainPath: string): boolean {
  return COMPILED_MAIN_PREFIXES.some((p) => mainPath.startsWith(p));
}

/** The warning for a source run that let Bun load `<cwd>/.env`, or null. */
export function bunDotenvWarning(mainPath: string, execArgv: readonly string[], cwd: string): string | null {
  if (isCompiled(mainPath) || execArgv.includes(NO_ENV_FILE_FLAG)) return null;
  const file = resolve(cwd, ".env");
  if (!existsSync(file)) return null;
  return (
    `bun loaded ${file} into the environment itself, so edits to it are not read on SIGHUP ` +
    `and it outranks --env-file; start with \`bun ${NO_ENV_FILE_FLAG} ${mainPath} serve\` (what npm start runs)`
  );
}
