/**
 * Logging via consola with mail-log conventions: one line per event, structured fields,
 * JSON when not on a TTY (journald, Docker), `key=value` text otherwise. Throttling is
 * off: a mail log must show every session, even identical ones.
 * Secrets never reach here: callers pass only the fields they mean to log.
 */
import { createConsola, type ConsolaReporter, type LogObject } from "consola/core";
import type { LogFormat, LogLevel } from "../config/config.ts";

type LogScalar = string | number | boolean | null | undefined;
/** A flat record inside a field (one entry of a session's `messages`). */
export type LogRecord = Record<string, LogScalar | string[]>;
export type LogFields = Record<string, LogScalar | string[] | LogRecord[]>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

const LEVELS: Record<LogLevel, number> = { error: 0, warn: 1, info: 3, debug: 4 };

function splitArgs(obj: LogObject): { msg: string; fields: LogFields } {
  const [msg, fields] = obj.args as [unknown, LogFields | undefined];
  return { msg: String(msg), fields: fields ?? {} };
}

const jsonReporter = (write: (s: string) => void): ConsolaReporter => ({
  log(obj) {
    const { msg, fields } = splitArgs(obj);
    write(`${JSON.stringify({ time: obj.date.toISOString(), level: obj.type, msg, ...fields })}\n`);
  },
});

function textValue(v: LogFields[string]): string {
  if (Array.isArray(v)) return v.some((x) => typeof x === "object") ? JSON.stringify(v) : v.join(",");
  const s = String(v);
  return /[\s"=]/.test(s) || s === "" ? JSON.stringify(s) : s;
}

const textReporter = (write: (s: string) => void): ConsolaReporter => ({
  log(obj) {
    const { msg, fields } = splitArgs(obj);
    const kv = Object.entries(fields)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${textValue(v)}`)
      .join(" ");
    write(`${obj.date.toISOString()} ${obj.type.toUpperCase().padEnd(5)} ${msg}${kv ? ` ${kv}` : ""}\n`);
  },
});

export function createLogger(opts: { level: LogLevel; format: LogFormat; write?: (s: string) => void }): Logger {
  const write = opts.write ?? ((s: string) => void process.stdout.write(s));
  const consola = createConsola({
    level: LEVELS[opts.level],
    throttle: 0,
    reporters: [opts.format === "json" ? jsonReporter(write) : textReporter(write)],
  });
  return {
    debug: (msg, fields) => consola.debug(msg, fields),
    info: (msg, fields) => consola.info(msg, fields),
    warn: (msg, fields) => consola.warn(msg, fields),
    error: (msg, fields) => consola.error(msg, fields),
  };
}

/** For tests and commands that must stay quiet. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
