/**
 * The CLI's entry: citty's runMain for `--help` and `--version`, otherwise runCommand with
 * citty's own usage errors (unknown command, no command, missing or invalid argument) turned
 * into one line on stderr, exit 1 (SPEC §1). runMain printed the whole usage to stdout and an
 * unprefixed, colour-coded message to stderr, even into a pipe or a log.
 * Errors of the commands themselves are handled by cliAction (action.ts) before they get here.
 */
import { renderUsage, runCommand, runMain, type CommandDef } from "citty";
import { debugRequested } from "../config/config.ts";
import { describeError } from "../errors.ts";

// Resolved lazily like citty does: a definition, a promise of one, or a function returning either.
type Resolvable<T> = T | Promise<T> | (() => T | Promise<T>);
// The commands' own args types do not matter here; citty's CommandDef is generic over them.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyCommand = CommandDef<any>;

const HELP_FLAGS = ["--help", "-h"];
const VERSION_FLAGS = ["--version", "-v"];

export async function runCli(main: AnyCommand, rawArgs: string[] = process.argv.slice(2)): Promise<void> {
  if (rawArgs.find((a) => !a.startsWith("-")) !== "serve") endQuietlyOnBrokenPipe();
  if (rawArgs.some((a) => HELP_FLAGS.includes(a)) || (rawArgs.length === 1 && VERSION_FLAGS.includes(rawArgs[0] ?? ""))) {
    return runMain(main, { rawArgs, showUsage: (cmd, parent) => showUsage(main, rawArgs, cmd, parent) });
  }
  try {
    await runCommand(main, { rawArgs });
  } catch (err) {
    process.stderr.write(`mailgw: ${await usageErrorLine(main, rawArgs, err)}\n`);
    // Not a usage error (e.g. a command module that failed to load): its stack, as cliAction does.
    if (debugRequested() && err instanceof Error && err.stack && !("code" in err)) process.stderr.write(`${err.stack}\n`);
    process.exitCode = 1;
  }
}

/**
 * `mailgw queue list | head` on a big queue: the reader goes away while output is still being
 * written, and Bun reported the EPIPE as an uncaught error with a stack trace and exit 1. Like
 * any Unix filter, a command whose reader has gone just stops, quietly (exit 0: it did what it
 * was asked; a queue retry or drop has already been committed when its one line is printed).
 * Not for `serve`: its stdout is the log, and what to do when that goes is serve's concern.
 */
function endQuietlyOnBrokenPipe(): void {
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(0);
    throw err;
  });
}

/**
 * citty's usage names a command by its parent alone ("USAGE queue retry"); this names it by
 * its whole path ("USAGE mailgw queue retry"), as it is typed.
 */
async function showUsage(main: AnyCommand, rawArgs: readonly string[], cmd: AnyCommand, parent?: AnyCommand): Promise<void> {
  const { path } = await commandWords(main, rawArgs);
  const parentName = path.slice(0, -1).join(" ");
  const usage = await renderUsage(cmd, parentName ? { meta: { name: parentName } } : parent);
  // citty colours it whatever stdout is: `mailgw --help > file` or `| less` got escape codes.
  console.log(`${process.stdout.isTTY ? usage : usage.replace(ANSI_SGR, "")}\n`);
}

/** Colour and style escapes (SGR) as citty writes them. */
const ANSI_SGR = /\x1b\[[0-9;]*m/g;

/** One line for a usage error: what is wrong, and where the help for it is. */
async function usageErrorLine(main: AnyCommand, rawArgs: readonly string[], err: unknown): Promise<string> {
  const code = err !== null && typeof err === "object" && "code" in err ? String(err.code) : "";
  const plain = describeError(err).replace(/\x1b\[[0-9;]*m/g, "");
  const message = plain.charAt(0).toLowerCase() + plain.slice(1);
  const { path, subCommands } = await commandWords(main, rawArgs);
  const help = `see ${path.join(" ")} --help`;
  if (code === "E_UNKNOWN_COMMAND" || code === "E_NO_COMMAND") {
    const reordered = optionsBeforeCommand(rawArgs, path, subCommands);
    if (reordered !== null) return `options go after the command: ${reordered} (${help})`;
    const what = code === "E_NO_COMMAND" ? noCommandGiven(rawArgs, path) : message.replace(/^unknown command [`'"]?(.*?)[`'"]?$/, "unknown command '$1'");
    return `${what}: expected one of ${subCommands.join(", ")} (${help})`;
  }
  if (code === "EARG") return `${message.replace(/\.$/, "")} (${help})`;
  return message;
}

/** `mailgw --bogus`: the options given where a command was expected are named, so a typo shows. */
function noCommandGiven(rawArgs: readonly string[], path: readonly string[]): string {
  const options = rawArgs.slice(rawArgs.indexOf(path[path.length - 1] ?? "") + 1).filter((a) => a.startsWith("-"));
  if (options.length === 0) return "no command given";
  const shown = options.slice(0, 3).map((o) => `'${o.split("=")[0]}'`).join(", ");
  return `no command given, only the option${options.length === 1 ? "" : "s"} ${shown}${options.length > 3 ? ", …" : ""}`;
}

/**
 * `mailgw queue --env-file F list`: citty takes the option's value for the command word, and
 * "unknown command 'F'" hid the real slip. When a subcommand is named after options, the same
 * line with the options moved after it; otherwise null.
 */
function optionsBeforeCommand(rawArgs: readonly string[], path: readonly string[], subCommands: readonly string[]): string | null {
  const rest = rawArgs.slice(rawArgs.indexOf(path[path.length - 1] ?? "") + 1);
  const at = rest.findIndex((a) => subCommands.includes(a));
  if (at <= 0 || !rest[0]?.startsWith("-")) return null;
  return [...path, rest[at], ...rest.slice(at + 1), ...rest.slice(0, at)].join(" ");
}

/** The command words in rawArgs (["mailgw", "rules", "add"]) and the subcommands the last one has. */
async function commandWords(main: AnyCommand, rawArgs: readonly string[]): Promise<{ path: string[]; subCommands: string[] }> {
  const path = ["mailgw"];
  let cmd = main;
  for (const word of rawArgs) {
    if (word.startsWith("-")) continue;
    const subs = await resolve(cmd.subCommands as Resolvable<Record<string, Resolvable<AnyCommand>>> | undefined);
    const next = subs?.[word];
    if (!next) break;
    const resolved = await resolve(next);
    if (!resolved) break;
    path.push(word);
    cmd = resolved;
  }
  const subs = await resolve(cmd.subCommands as Resolvable<Record<string, Resolvable<AnyCommand>>> | undefined);
  return { path, subCommands: Object.keys(subs ?? {}) };
}

async function resolve<T>(value: Resolvable<T> | undefined): Promise<T | undefined> {
  return typeof value === "function" ? await (value as () => T | Promise<T>)() : await value;
}
