/**
 * Process signals for `mailgw serve`: SIGTERM/SIGINT stop the gateway gracefully (once; a
 * second signal while stopping exits at once with 1), SIGHUP reloads. Resolves when the
 * gateway has stopped. Handlers are removed afterwards, so tests can call this repeatedly.
 *
 * The handlers are installed BEFORE the gateway starts: until a listener exists, the OS
 * default action for SIGTERM and SIGHUP is to kill the process, so a supervisor that signals
 * right after the "started" line (or during start-up: systemd's ExecReload, a fast stop) would
 * otherwise end it uncleanly. A stop signal during start-up stops the gateway as soon as it is
 * up; a SIGHUP during start-up is ignored (the rules and certificate are being read anyway).
 * If start-up fails, the handlers are removed and the start-up error is passed on.
 *
 * A stop that hangs (a disk that stopped answering under a service's stop) ends at
 * STOP_DEADLINE_MS with a log line naming the service, exit 1, before the supervisor's SIGKILL
 * (TimeoutStopSec, systemd/unit.ts, is longer): nothing that got 250 is lost either way (it is
 * durable before the 250; the next start finishes it), but the journal then says what hung.
 * It cannot fire while a synchronous call blocks the event loop: TimeoutStopSec still bounds that.
 */
import { describeError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import { takeEarlySignals } from "./early-signals.ts";
import type { Gateway } from "./gateway.ts";

/** How long a stop may take before serve gives up on it (the slowest normal stop is ~30 s). */
export const STOP_DEADLINE_MS = 75_000;

export interface StopDeadline {
  ms: number;
  /** process.exit, injectable for tests. */
  exit(code: number): void;
}

export function runUntilSignalled(starting: Promise<Gateway>, logger: Logger, deadline: StopDeadline = { ms: STOP_DEADLINE_MS, exit: (code) => process.exit(code) }): Promise<void> {
  let gateway: Gateway | null = null;
  let stopping = false;
  let onStop: (signal: NodeJS.Signals) => void = () => {};
  const onHup = (): void => {
    if (stopping || gateway === null) return;
    gateway.reload().catch((err: unknown) => logger.error("reload failed", { error: describeError(err) }));
  };
  const removeHandlers = (): void => {
    process.off("SIGTERM", onStop);
    process.off("SIGINT", onStop);
    process.off("SIGHUP", onHup);
  };
  const stopped = new Promise<void>((resolve) => {
    onStop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        logger.warn("second stop signal: exiting without waiting", { signal });
        process.exit(1);
      }
      stopping = true;
      logger.info("stopping: no new connections; sessions in flight may finish", { signal });
      const watchdog = setTimeout(() => {
        logger.error(`the stop did not finish within ${deadline.ms / 1000} s: exiting without waiting`, {
          still_stopping: gateway?.stopping() ?? "start-up",
          hint: "every message that got 250 is on disk; the next start finishes what was under way",
        });
        deadline.exit(1);
      }, deadline.ms);
      // Not unref'd: a stop stuck on a promise that nothing will settle would otherwise let the
      // process run out of work and exit 0 halfway through, with nothing logged.
      starting
        .then((g) => g.stop())
        .catch((err: unknown) => logger.error("stop failed", { error: describeError(err) }))
        .finally(() => {
          clearTimeout(watchdog);
          removeHandlers();
          logger.info("stopped");
          resolve();
        });
    };
  });
  process.on("SIGTERM", onStop);
  process.on("SIGINT", onStop);
  process.on("SIGHUP", onHup);
  // A stop signal that came while serve was loading (src/main.ts caught it) is honoured now.
  const early = takeEarlySignals();
  if (early !== null) onStop(early);
  return starting.then(
    (g) => {
      gateway = g;
      return stopped;
    },
    (err: unknown) => {
      removeHandlers();
      throw err;
    },
  );
}
