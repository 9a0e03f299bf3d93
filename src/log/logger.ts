/**
 * Logging via consola with mail-log conventions: one line per event, structured fields,
 * JSON when not on a TTY (journald, Docker), `key=value` text otherwise. Throttling is
 * off: a mail log must show every session, even identical ones.
 * Secrets never reach here: callers pass only the fields they mean to log.
 */
import { fstatSync } from "node:fs";
import { format } from "node:util";
import { createConsola, type ConsolaReporter, type LogObject } from "consola/core";
import type { LogFormat, LogLevel } from "../config/config.ts";
import { terminalSafeJson as json } from "./terminal-json.ts";

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

/** syslog priorities (RFC 5424) of consola's types, for journald's `<N>` line prefix. */
const SYSLOG_PRIORITY: Record<string, number> = { fatal: 2, error: 3, warn: 4, info: 6, log: 6, debug: 7 };

/**
 * `<N>` for a line journald reads from the service's stdout: with systemd's default
 * SyslogLevelPrefix=yes it takes N as the entry's priority and drops the prefix. Without it,
 * every line was priority 6 (info), and `journalctl -u mailgw -p warning` showed nothing,
 * the failed deliveries and refused reloads included.
 */
function levelPrefix(type: string): string {
  return `<${SYSLOG_PRIORITY[type] ?? 6}>`;
}

/**
 * Whether stdout is the journal stream systemd named in JOURNAL_STREAM (`dev:inode`): only then
 * is the prefix read as a priority; anywhere else (a pipe to another program, a file, Docker)
 * it would be text in the line. systemd's advice is to compare both numbers.
 */
export function stdoutIsJournal(journalStream: string | null): boolean {
  return isJournal(1, journalStream);
}

/** stdoutIsJournal for stderr, where a command's fatal error goes (cli/action.ts). */
export function stderrIsJournal(journalStream: string | null): boolean {
  return isJournal(2, journalStream);
}

function isJournal(fd: number, journalStream: string | null): boolean {
  if (journalStream === null) return false;
  try {
    const st = fstatSync(fd, { bigint: true });
    return journalStream === `${st.dev}:${st.ino}`;
  } catch {
    return false;
  }
}

function splitArgs(obj: LogObject): { msg: string; fields: LogFields } {
  const [msg, fields] = obj.args as [unknown, LogFields | undefined];
  return { msg: String(msg), fields: fields ?? {} };
}

/**
 * JSON lines go through `json` too: `journalctl -u mailgw` and `docker logs` show them in a
 * terminal as they are, where a raw bidi override in a client's HELO or sender reversed the
 * rest of the line. The escapes decode to the same string for a log shipper.
 */
const jsonReporter = (write: (s: string) => void, prefix: (type: string) => string): ConsolaReporter => ({
  log(obj) {
    const { msg, fields } = splitArgs(obj);
    write(`${prefix(obj.type)}${json({ time: obj.date.toISOString(), level: obj.type, msg, ...fields })}\n`);
  },
});

/**
 * Characters a text value is quoted for: whitespace, quote and `=` (they would split or fake a
 * `key=value`), and what a terminal or `journalctl` would act on or hide instead of showing:
 * C0/C1 controls (ESC sequences), bidi overrides and isolates (an address that reads backwards),
 * zero-width and line/paragraph separators.
 */
const NEEDS_QUOTES = /[\s"=\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/;

function textValue(v: LogFields[string]): string {
  // A list of records (a session's `messages`) as JSON, which delimits itself.
  if (Array.isArray(v) && v.some((x) => typeof x === "object")) return json(v);
  // A list is one value: `refused="x@other.example (550),y@other.example (550)"`, not bare text
  // whose spaces a reader would take for the end of the field.
  const s = Array.isArray(v) ? v.join(",") : String(v);
  return NEEDS_QUOTES.test(s) || s === "" ? json(s) : s;
}

const textReporter = (write: (s: string) => void, prefix: (type: string) => string): ConsolaReporter => ({
  log(obj) {
    const { msg, fields } = splitArgs(obj);
    const kv = Object.entries(fields)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${textValue(v)}`)
      .join(" ");
    write(`${prefix(obj.type)}${obj.date.toISOString()} ${obj.type.toUpperCase().padEnd(5)} ${msg}${kv ? ` ${kv}` : ""}\n`);
  },
});

/** `journalPriority`: each line starts with its syslog priority (`<6>`), for journald (stdoutIsJournal). */
export function createLogger(opts: { level: LogLevel; format: LogFormat; write?: (s: string) => void; journalPriority?: boolean }): Logger {
  const write = opts.write ?? ((s: string) => void process.stdout.write(s));
  const prefix = opts.journalPriority === true ? levelPrefix : (): string => "";
  const consola = createConsola({
    level: LEVELS[opts.level],
    throttle: 0,
    reporters: [opts.format === "json" ? jsonReporter(write, prefix) : textReporter(write, prefix)],
  });
  return {
    debug: (msg, fields) => consola.debug(msg, fields),
    info: (msg, fields) => consola.info(msg, fields),
    warn: (msg, fields) => consola.warn(msg, fields),
    error: (msg, fields) => consola.error(msg, fields),
  };
}

/** Longest library output kept in one log line. */
const LIBRARY_OUTPUT_MAX_CHARS = 2000;

/**
 * Sends what libraries print with `console.*` into serve's log, as `library output` lines, instead
 * of raw lines in the middle of the JSON stream a log shipper parses. Why: mailauth prints
 * `TOTAL <n> EXPECTING <m>` on stdout for every DKIM signature whose `l=` differs from the body's
 * length, which any sender can put in a message. log/info/debug go to debug, warn/error to warn.
 * serve only: the CLI's own commands print their output with console.log.
 */
export function routeConsoleToLogger(logger: Logger): void {
  const line = (args: unknown[]): { text: string } => ({ text: format(...args).slice(0, LIBRARY_OUTPUT_MAX_CHARS) });
  const quiet = (...args: unknown[]): void => logger.debug("library output", line(args));
  const loud = (...args: unknown[]): void => logger.warn("library output", line(args));
  console.log = quiet;
  console.info = quiet;
  console.debug = quiet;
  console.warn = loud;
  console.error = loud;
}

/**
 * Log text handed to the output and not yet written, past which lines are dropped. Bun never
 * blocks on a full pipe: it keeps what does not fit, so a reader that stopped reading without
 * going away (a stopped `| logger`, a log shipper stuck on its own output) made serve's memory
 * grow by everything it logged, for as long as the reader stalled (measured: 82 MB of session
 * lines into a pipe nobody read took RSS from 88 to 234 MB, still climbing; with this bound it
 * stays at 155-185 MB, as with a reader that keeps up). Postfix's syslog does not wait for its
 * reader either. 4 Mi characters are ~10,000 session lines: a reader back within minutes of a
 * busy gateway's log loses nothing.
 */
const LOG_PENDING_MAX_CHARS = 4 * 1024 * 1024;

/**
 * serve's log sink. A mail server must not stop because its log reader went away (`serve |
 * tee log` with tee killed, a log shipper restarted): Bun turned the EPIPE of the next
 * stdout write into an uncaught error that ended serve, every session with it. From the
 * first failed write on (EPIPE, ENOSPC on a full disk), lines go to stderr, the failed ones
 * included, and `onSwitch` is told once (serve logs it, through this sink); if stderr is gone
 * too, lines are dropped. Nor must serve wait for, or hoard memory for, a reader that stalls:
 * past LOG_PENDING_MAX_CHARS lines are dropped, and `onDropped` is told how many once half of
 * what waited has been written. The mail never depended on the log.
 */
export function logSinkSurvivingClosedStdout(onSwitch: (error: string) => void, onDropped: (lines: number) => void): (s: string) => void {
  let target: NodeJS.WriteStream = process.stdout;
  // Bun's writableLength stays 0 for a pipe, so what waits is counted here, per write.
  let pending = 0;
  let dropped = 0;
  // Each write's callback is given the error too; without a listener it would also end serve.
  process.stdout.on("error", () => undefined);
  process.stderr.on("error", () => undefined);
  const write = (s: string): void => {
    if (pending > LOG_PENDING_MAX_CHARS) {
      dropped++;
      return;
    }
    const into = target;
    pending += s.length;
    into.write(s, (err?: NodeJS.ErrnoException | null) => {
      // A callback from stdout after the switch: its count went with the switch.
      if (into === target) pending -= s.length;
      if (err) {
        if (into !== process.stdout) return;
        if (target === process.stdout) {
          target = process.stderr;
          pending = 0;
          onSwitch(err.code ?? err.message);
        }
        write(s);
        return;
      }
      if (dropped > 0 && into === target && pending <= LOG_PENDING_MAX_CHARS / 2) {
        const lines = dropped;
        dropped = 0;
        onDropped(lines);
      }
    });
  };
  return write;
}

/** For tests and commands that must stay quiet. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
