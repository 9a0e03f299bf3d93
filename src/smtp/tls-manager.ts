/**
 * Keeps the STARTTLS certificate in force and current: loads it at start (CliError naming the
 * file when unusable → serve exits 1), reloads it on SIGHUP (reload()) and when its directory
 * changes (watch()). A reload swaps smtp-server's secure context (updateSecureContext), so new
 * handshakes use the new certificate while sessions already under TLS keep theirs.
 * Failure on reload: logged, the previous certificate stays in force; so does it when the new
 * certificate has expired and the one in force has not (tls-certificate-check.ts). An expired
 * certificate at start is served (senders mostly use opportunistic TLS) with a warning, and so is
 * one not valid yet, at start and on reload. status() tells /healthz which certificate is in
 * force and whether the last reload was refused: a renewal that keeps failing is otherwise only
 * in the log, until the certificate expires.
 */
import type { SMTPServer } from "smtp-server";
import type { TlsConfig } from "../config/config.ts";
import { describeError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import { readRenewal, warnAboutCertificate } from "./tls-certificate-check.ts";
import { certificateInfo, type CertificateInfo, loadTlsMaterial, type TlsMaterial } from "./tls-files.ts";
import { createTlsWatch } from "./tls-watch.ts";

export interface TlsManager {
  current(): TlsMaterial;
  attach(smtp: SMTPServer): void;
  /** Re-reads the files; true when the certificate in force is the one on disk. */
  reload(): boolean;
  status(): TlsStatus;
  watch(): void;
  unwatch(): void;
}

export interface TlsStatus {
  /** The certificate in force (its leaf), null when it cannot be parsed. */
  certificate: CertificateInfo | null;
  /** Why the last reload was refused; null when it was not (or none happened). */
  reloadError: string | null;
}

export function createTlsManager(cfg: TlsConfig, logger: Logger, debounceMs?: number): TlsManager {
  const keyPath = cfg.keyPath ?? "";
  const certPath = cfg.certPath ?? "";
  let material = loadTlsMaterial(keyPath, certPath);
  warnAboutCertificate(logger, keyPath, certPath, material);
  let inForce = certificateInfo(material.cert);
  let server: SMTPServer | null = null;
  /** Why the last reload attempt failed: the next good one says so, even with nothing to swap. */
  let failing: string | null = null;
  const fail = (err: unknown): false => {
    failing = describeError(err);
    logger.error("TLS certificate reload failed; the current certificate stays in force", { error: failing });
    return false;
  };

  const reload = (): boolean => {
    const renewal = readRenewal(keyPath, certPath, material);
    if (renewal.kind === "refused") return fail(renewal.error);
    if (renewal.kind === "same") {
      if (failing !== null) logger.info("TLS certificate files valid again; the certificate in force is unchanged", { cert: certPath });
      failing = null;
      return true;
    }
    const { material: next, info } = renewal;
    try {
      server?.updateSecureContext({ key: next.key, cert: next.cert });
    } catch (err) {
      return fail(err);
    }
    material = next;
    inForce = info;
    failing = null;
    logger.info("TLS certificate reloaded", { cert: certPath, serial: info?.serial, subject: info?.subject, not_after: info?.notAfter.toISOString() });
    warnAboutCertificate(logger, keyPath, certPath, next);
    return true;
  };

  const watcher = createTlsWatch([keyPath, certPath], () => void reload(), logger, debounceMs);
  return {
    current: () => material,
    status: () => ({ certificate: inForce, reloadError: failing }),
    attach(smtp) {
      server = smtp;
    },
    reload,
    watch: watcher.watch,
    unwatch: watcher.unwatch,
  };
}
