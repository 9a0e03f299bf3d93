/**
 * What serve does when an exception escapes every handler, or a rejected promise has none: it
 * logs the reason as ONE error line of its own log and exits 1, so the supervisor (systemd's
 * Restart=, a container's restart policy) starts it again and sees a failure. Without this, Bun
 * printed the source excerpt and the stack as several bare lines on stderr: under systemd each
 * became its own journal entry at priority 6 (info), so `journalctl -u mailgw -p err` showed
 * no reason for the restart, and a log shipper reading serve's JSON lines saw nothing at all.
 *
 * Why exit and not carry on: the failed code may have left a session, a delivery or the queue's
 * bookkeeping half done, and the next start's recovery is what puts those right (spool/ and the
 * database are written so that a crash loses nothing acknowledged).
 *
 * Trusts: nothing. Failure: the log line cannot be written → the exit happens anyway, bounded.
 */
import { describeError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";

/** Longest the crash line may take to reach a slow log reader before serve exits anyway. */
const CRASH_FLUSH_MS = 1000;

/** Installs the handlers (once per process: serve is the only caller). */
export function exitOnUncaughtError(logger: Logger): void {
  let crashed = false;
  const crash = (kind: string, err: unknown): void => {
    // A second one while the first line is being written adds nothing: the first is the cause.
    if (crashed) return;
    crashed = true;
    process.exitCode = 1;
    logger.error(`serve crashed (${kind}): exiting with status 1 so that it is restarted`, {
      error: describeError(err),
      stack: err instanceof Error && err.stack ? err.stack : undefined,
    });
    exitOnceWritten();
  };
  process.on("uncaughtException", (err) => crash("uncaught exception", err));
  process.on("unhandledRejection", (reason) => crash("unhandled promise rejection", reason));
}

/**
 * Exits 1 once what was handed to stdout and stderr before this call has been written: the
 * callback of a write comes after those of the writes before it. The log sink may have moved
 * to stderr (logger.ts), hence both.
 */
function exitOnceWritten(): void {
  let waiting = 2;
  const done = (): void => {
    if (--waiting === 0) process.exit(1);
  };
  for (const stream of [process.stdout, process.stderr]) {
    try {
      stream.write("", done);
    } catch {
      done();
    }
  }
  setTimeout(() => process.exit(1), CRASH_FLUSH_MS);
}
