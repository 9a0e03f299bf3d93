/**
 * Bun run from source (`bun src/main.ts …`) copies ./.env into process.env by itself unless it
 * is started with --no-env-file. mailgw reads .env itself and ranks the environment above it
 * (src/config), so that copy pins the start-up values: an edited .env (a fixed relay password)
 * followed by SIGHUP changed nothing, and a cwd .env outranked `--env-file`. `npm start`,
 * `npm run mailgw` and a source-mode systemd unit pass the flag; the compiled executable is
 * built without the autoload (scripts/build.ts). This module names the flag and warns when a
 * hand-typed `bun src/main.ts serve` ran without it.
 */
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";

/** Bun's flag that turns its own .env loading off. */
export const NO_ENV_FILE_FLAG = "--no-env-file";

/** Entry-point prefixes of a `bun build --compile` executable (Bun.main inside it). */
const COMPILED_MAIN_PREFIXES = ["/$bunfs/", "B:/~BUN/", "B:\\~BUN\\"];

export function isCompiled(mainPath: string): boolean {
  return COMPILED_MAIN_PREFIXES.some((p) => mainPath.startsWith(p));
}

/**
 * The warning for a source run that let Bun load `<cwd>/.env`, or null. Bun also reads an
 * unquoted `#` as the start of a comment wherever it is, where mailgw, systemd and docker keep it
 * unless a space comes before it: `RELAY_SMTP_PASS=#abc` was "" in the environment Bun made,
 * which outranks .env, and serve refused to start with "RELAY_SMTP_USER and RELAY_SMTP_PASS must
 * be set together (one of them is empty)" for a file that sets both. Such variables are named.
 */
export function bunDotenvWarning(mainPath: string, execArgv: readonly string[], cwd: string): string | null {
  if (isCompiled(mainPath) || execArgv.includes(NO_ENV_FILE_FLAG)) return null;
  const file = resolve(cwd, ".env");
  if (!existsSync(file)) return null;
  const cut = bunCommentCuts(readText(file));
  const misread = cut.length === 0 ? "" : `; Bun also cut ${cut.join(", ")} at an unquoted '#' (a comment to Bun; mailgw, systemd and docker keep it), so put such a value in single quotes: ${cut[0]}='…#…'`;
  return (
    `bun loaded ${file} into the environment itself, so edits to it are not read on SIGHUP ` +
    `and it outranks --env-file; start with \`bun ${NO_ENV_FILE_FLAG} ${mainPath} serve\` (what npm start runs)${misread}`
  );
}

function readText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

/**
 * The variables of an env file whose unquoted value keeps a `#` for mailgw's reader (none of its
 * `#` after a space: config/parse-values.ts) that Bun's loader cuts there. Names only, never values.
 */
export function bunCommentCuts(text: string): string[] {
  const names: string[] = [];
  for (const line of text.split(/\r?\n/)) {
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$/.exec(line.trim());
    if (!m) continue;
    const value = (m[2] ?? "").replace(/^\s+#.*$/, "").trim();
    // Bun keeps a '#' in a double-, single- or backtick-quoted value.
    if (value.startsWith('"') || value.startsWith("'") || value.startsWith("`")) continue;
    if (value.replace(/\s+#.*$/, "").includes("#")) names.push(m[1] ?? "");
  }
  return names;
}
