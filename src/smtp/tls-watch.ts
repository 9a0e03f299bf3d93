/**
 * Whether the STARTTLS files are watched (tls-manager.ts): on from serve's start until its stop,
 * each change a reload attempt (tls-files.ts debounces them and follows symlinks). Separate
 * because the watcher's lifetime is serve's, not the certificate's.
 *
 * Trusts: watch-files.ts. Failure: a watch error is logged; SIGHUP still reloads.
 */
import { describeError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import { watchTlsFiles } from "./tls-files.ts";

export interface TlsWatch {
  /** Starts watching; a second call while watching does nothing. */
  watch(): void;
  unwatch(): void;
}

export function createTlsWatch(paths: readonly string[], reload: () => void, logger: Logger, debounceMs?: number): TlsWatch {
  let stopWatching: (() => void) | null = null;
  return {
    watch() {
      stopWatching ??= watchTlsFiles(
        paths,
        reload,
        (err) => logger.warn("cannot watch TLS files for changes; SIGHUP still reloads them", { error: describeError(err) }),
        debounceMs,
      );
    },
    unwatch() {
      stopWatching?.();
      stopWatching = null;
    },
  };
}
