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
 */
import { describeError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import type { Gateway } from "./gateway.ts";

export function runUntilSignalled(starting: Promise<Gateway>, logger: Logger): Promise<void> {
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
      starting
        .then((g) => g.stop())
        .catch((err: unknown) => logger.error("stop failed", { error: describeError(err) }))
        .finally(() => {
          removeHandlers();
          logger.info("stopped");
          resolve();
        });
    };
  });
  process.on("SIGTERM", onStop);
  process.on("SIGINT", onStop);
  process.on("SIGHUP", onHup);
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
