/**
 * Keeps the STARTTLS certificate in force and current: loads it at start (CliError naming the
 * file when unusable → serve exits 1), reloads it on SIGHUP (reload()) and when its directory
 * changes (watch()). A reload swaps smtp-server's secure context (updateSecureContext), so new
 * handshakes use the new certificate while sessions already under TLS keep theirs.
 * Failure on reload: logged, the previous certificate stays in force.
 */
import type { SMTPServer } from "smtp-server";
import type { TlsConfig } from "../config/config.ts";
import { describeError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import { loadTlsMaterial, missingChainWarning, sameMaterial, watchTlsFiles, type TlsMaterial } from "./tls-files.ts";

export interface TlsManager {
  current(): TlsMaterial;
  attach(smtp: SMTPServer): void;
  /** Re-reads the files; true when the certificate in force is the one on disk. */
  reload(): boolean;
  watch(): void;
  unwatch(): void;
}

export function createTlsManager(cfg: TlsConfig, logger: Logger, debounceMs?: number): TlsManager {
  const keyPath = cfg.keyPath ?? "";
  const certPath = cfg.certPath ?? "";
  let material = loadTlsMaterial(keyPath, certPath);
  const warnIfNoChain = (cert: Buffer): void => {
    const warning = missingChainWarning(certPath, cert);
    if (warning) logger.warn(warning);
  };
  warnIfNoChain(material.cert);
  let server: SMTPServer | null = null;
  let stopWatching: (() => void) | null = null;

  const reload = (): boolean => {
    let next: TlsMaterial;
    try {
      next = loadTlsMaterial(keyPath, certPath);
    } catch (err) {
      logger.error("TLS certificate reload failed; the current certificate stays in force", { error: describeError(err) });
      return false;
    }
    if (sameMaterial(next, material)) return true;
    try {
      server?.updateSecureContext({ key: next.key, cert: next.cert });
    } catch (err) {
      logger.error("TLS certificate reload failed; the current certificate stays in force", { error: describeError(err) });
      return false;
    }
    material = next;
    logger.info("TLS certificate reloaded", { cert: certPath });
    warnIfNoChain(next.cert);
    return true;
  };

  return {
    current: () => material,
    attach(smtp) {
      server = smtp;
    },
    reload,
    watch() {
      stopWatching ??= watchTlsFiles(
        [keyPath, certPath],
        () => void reload(),
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
