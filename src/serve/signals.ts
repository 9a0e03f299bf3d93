/**
 * Process signals for `mailgw serve`: SIGTERM/SIGINT stop the gateway gracefully (once; a
 * second signal while stopping exits at once with 1), SIGHUP reloads. Resolves when the
 * gateway has stopped. Handlers are removed afterwards, so tests can call this repeatedly.
 */
import { describeError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import type { Gateway } from "./gateway.ts";

export function runUntilSignalled(gateway: Gateway, logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    const onStop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        logger.warn("second stop signal: exiting without waiting", { signal });
        process.exit(1);
      }
      stopping = true;
      logger.info("stopping: no new connections; sessions in flight may finish", { signal });
      gateway
        .stop()
        .catch((err: unknown) => logger.error("stop failed", { error: describeError(err) }))
        .finally(() => {
          process.off("SIGTERM", onStop);
          process.off("SIGINT", onStop);
          process.off("SIGHUP", onHup);
          logger.info("stopped");
          resolve();
        });
    };
    const onHup = (): void => {
      if (stopping) return;
      gateway.reload().catch((err: unknown) => logger.error("reload failed", { error: describeError(err) }));
    };
    process.on("SIGTERM", onStop);
    process.on("SIGINT", onStop);
    process.on("SIGHUP", onHup);
  });
}
