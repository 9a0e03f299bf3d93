/**
 * What the STARTTLS manager (tls-manager.ts) checks about a certificate beyond loading it: the
 * warnings it is served with (no intermediate, expired, not valid yet), and whether a renewal
 * found on disk may replace the pair in force. Separate from the manager's state: these look at
 * the files and the clock, and change nothing.
 *
 * Trusts: tls-files.ts to load and parse the pair. Failure: a pair that cannot be used is
 * returned as a refusal, never thrown.
 */
import type { Logger } from "../log/logger.ts";
import { certificateInfo, extraPairWarnings, isExpired, loadTlsMaterial, missingChainWarning, sameMaterial, type CertificateInfo, type TlsMaterial } from "./tls-files.ts";

/** Logs what senders that verify certificates will stumble on; the certificate is served anyway. */
export function warnAboutCertificate(logger: Logger, keyPath: string, certPath: string, material: TlsMaterial): void {
  const { cert } = material;
  const warning = missingChainWarning(certPath, cert);
  if (warning) logger.warn(warning);
  for (const extra of extraPairWarnings(keyPath, material.key, certPath, cert)) logger.warn(extra);
  const info = certificateInfo(cert);
  if (isExpired(info, Date.now())) logger.warn(`SMTP_TLS_CERT=${certPath} expired on ${info?.notAfter.toISOString()}: senders that verify certificates will not deliver over it; renew it`);
  // Served all the same (this machine's clock may be the one that is wrong), but a reload to it
  // was only "TLS certificate reloaded" at info level while verifying senders were turned away.
  if (info && info.notBefore.getTime() > Date.now()) {
    logger.warn(`SMTP_TLS_CERT=${certPath} is not valid before ${info.notBefore.toISOString()}: senders that verify certificates will not deliver over it until then; check the certificate and this machine's clock`);
  }
}

/** The files on disk compared with the pair in force. */
export type Renewal =
  | { kind: "same" }
  | { kind: "new"; material: TlsMaterial; info: CertificateInfo | null }
  | { kind: "refused"; error: unknown };

export function readRenewal(keyPath: string, certPath: string, inForce: TlsMaterial): Renewal {
  let next: TlsMaterial;
  try {
    next = loadTlsMaterial(keyPath, certPath);
  } catch (err) {
    return { kind: "refused", error: err };
  }
  if (sameMaterial(next, inForce)) return { kind: "same" };
  const info = certificateInfo(next.cert);
  const now = Date.now();
  // A renewal gone wrong (an old file restored, a stale copy, one staged before its date) must
  // not replace a certificate senders accept now: verifying senders would be turned away.
  if (usableAt(certificateInfo(inForce.cert), now)) {
    if (isExpired(info, now)) {
      return { kind: "refused", error: new Error(`the new certificate ${certPath} expired on ${info?.notAfter.toISOString()} (serial ${info?.serial})`) };
    }
    if (info && info.notBefore.getTime() > now) {
      return { kind: "refused", error: new Error(`the new certificate ${certPath} is not valid before ${info.notBefore.toISOString()} (serial ${info.serial}): install it from that date on`) };
    }
  }
  return { kind: "new", material: next, info };
}

/** Within its validity now (an unreadable date counts as usable: nothing to compare). */
function usableAt(info: CertificateInfo | null, now: number): boolean {
  return !isExpired(info, now) && !(info && info.notBefore.getTime() > now);
}
