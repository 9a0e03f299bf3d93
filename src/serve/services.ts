/**
 * The long-running parts of `mailgw serve` as a list of services, started in order and
 * stopped in reverse. Adding a part (delivery worker, HTTP server, ...) is one entry in
 * gateway.ts. A service that fails to start stops the ones already running, then the error
 * propagates (serve exits 1 with its message). Stop errors are logged, never thrown, so every
 * service gets its stop call.
 */
import { describeError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";

export interface Service {
  name: string;
  start(): Promise<void> | void;
  stop(): Promise<void> | void;
  /** SIGHUP: re-read what this service reads from disk (rules, certificates, relay). */
  reload?(): Promise<void> | void;
}

export interface ServiceGroup {
  start(): Promise<void>;
  stop(): Promise<void>;
  reload(): Promise<void>;
  /** The service whose stop is under way (null when none): what a stop that hangs is waiting for. */
  stopping(): string | null;
}

export function serviceGroup(services: readonly Service[], logger: Logger): ServiceGroup {
  const running: Service[] = [];
  let stopping: string | null = null;
  const stopRunning = async (): Promise<void> => {
    while (running.length > 0) {
      const service = running.pop();
      if (!service) break;
      stopping = service.name;
      try {
        await service.stop();
      } catch (err) {
        logger.error("stopping a service failed", { service: service.name, error: describeError(err) });
      }
    }
    stopping = null;
  };
  return {
    async start() {
      for (const service of services) {
        try {
          await service.start();
        } catch (err) {
          await stopRunning();
          throw err;
        }
        running.push(service);
      }
    },
    stop: stopRunning,
    stopping: () => stopping,
    async reload() {
      for (const service of running) {
        try {
          await service.reload?.();
        } catch (err) {
          logger.error("reload failed", { service: service.name, error: describeError(err) });
        }
      }
    },
  };
}
