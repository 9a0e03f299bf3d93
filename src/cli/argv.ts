/**
 * What citty's parser lets through: it parses with `strict: false`, so an unknown `--flag`
 * becomes `true`, the word after it an extra positional, and both are silently ignored —
 * `mailgw serve --smtp-port 25` would listen on 2525 without a word. `unexpectedArgument`
 * finds the first such token so the command can refuse it, and a switch given a value citty
 * would misread (`--tls=no` is true to it); `repeatedFlag` collects a flag given
 * several times (citty keeps only the last).
 *
 * Trusts: the command's args definitions (citty's ArgsDef shape). Failure: returns a message,
 * never throws, except `repeatedFlag` for a flag with no value (CliError).
 */
import { CliError } from "../errors.ts";

interface ArgDef {
  type?: string;
  alias?: string | string[];
  valueHint?: string;
}

const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const camel = (s: string) => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

function definitions(defs: unknown): [string, ArgDef][] {
  return defs !== null && typeof defs === "object" ? (Object.entries(defs) as [string, ArgDef][]) : [];
}

/**
 * ` (did you mean --port?)` for an option named as another command names it (`serve
 * --smtp-port`: systemd install's spelling of serve's `--port`) or with `_` for `-`, else "".
 */
function nearOption(name: string, known: ReadonlySet<string>): string {
  const dashed = name.replaceAll("_", "-");
  const near = known.has(dashed) ? dashed : [...known].find((k) => k.length > 1 && (name.endsWith(`-${k}`) || name.startsWith(`${k}-`)));
  return near === undefined ? "" : ` (did you mean --${near}?)`;
}

/**
 * The first token of `rawArgs` that no definition accepts: an unknown option, or a positional
 * beyond the declared ones (a `valueHint` ending in "..." takes any number). null when all fit.
 */
export function unexpectedArgument(defs: unknown, rawArgs: readonly string[]): string | null {
  const takesValue = new Set<string>();
  const isFlag = new Set<string>();
  let slots = 0;
  let variadic = false;
  for (const [name, def] of definitions(defs)) {
    if (def.type === "positional") {
      slots++;
      variadic ||= def.valueHint?.endsWith("...") ?? false;
      continue;
    }
    const aliases = def.alias === undefined ? [] : Array.isArray(def.alias) ? def.alias : [def.alias];
    for (const n of [name, kebab(name), camel(name), ...aliases]) {
      isFlag.add(n);
      if (def.type !== "boolean") takesValue.add(n);
      else isFlag.add(`no-${n}`);
    }
  }
  const positionals: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const token = rawArgs[i] ?? "";
    if (token === "--") {
      positionals.push(...rawArgs.slice(i + 1));
      break;
    }
    if (!token.startsWith("-") || token === "-") {
      positionals.push(token);
      continue;
    }
    const name = token.replace(/^--?/, "").split("=")[0] ?? "";
    if (!isFlag.has(name)) return `unknown option ${token.split("=")[0]}${nearOption(name, isFlag)}`;
    // citty reads `--tls=no` as true (any string is): only the two words it gets right pass.
    if (!takesValue.has(name) && token.includes("=") && !/=(true|false)$/.test(token)) {
      return `${token}: --${name} is a switch, give it alone (or =true, =false)`;
    }
    if (takesValue.has(name) && !token.includes("=")) {
      // citty gives an option with nothing after it an empty value, read as "not given".
      if (i + 1 >= rawArgs.length || rawArgs[i + 1] === "--") return `--${name} needs a value`;
      i++;
    }
  }
  if (!variadic && positionals.length > slots) return `unexpected argument '${positionals[slots]}'`;
  return null;
}

/** Every value of a flag given as `--name V` or `--name=V`, in order, under any of `names`. */
export function repeatedFlag(rawArgs: readonly string[], names: readonly string[]): string[] {
  const values: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const arg = rawArgs[i] ?? "";
    if (arg === "--") break;
    const name = names.find((n) => arg === `--${n}` || arg.startsWith(`--${n}=`));
    if (name === undefined) continue;
    const value = arg.length > name.length + 2 ? arg.slice(name.length + 3) : rawArgs[++i];
    if (value === undefined) throw new CliError(`--${name} needs a value`);
    values.push(value);
  }
  return values;
}
