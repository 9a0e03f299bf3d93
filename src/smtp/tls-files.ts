/**
 * STARTTLS key and certificate: loading (with the file named in every error) and watching
 * for renewals (certbot re-points the symlinks in its `live/` directory, Kubernetes swaps a
 * `..data` symlink, a deploy hook installs new files): watch-files.ts watches the directories
 * for the files' own names and follows a replaced directory or a re-pointed link; each change
 * triggers a debounced reload attempt.
 *
 * Failure: at start, a missing/unreadable/invalid file throws a CliError naming the variable
 * and path (serve exits 1). On reload, the error is returned to the caller, which logs it
 * and keeps the certificate in force — a half-written renewal never takes TLS down.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { createSecureContext } from "node:tls";
import { CliError, describeError } from "../errors.ts";
import { readConfigFileSync } from "../read-file.ts";
import { watchFiles } from "../watch-files.ts";

export interface TlsMaterial {
  key: Buffer;
  cert: Buffer;
}

/** Reload attempts wait this long after the last change: renewals write several files. */
export const TLS_RELOAD_DEBOUNCE_MS = 500;

export function loadTlsMaterial(keyPath: string, certPath: string): TlsMaterial {
  const key = readPem(keyPath, "SMTP_TLS_KEY");
  const cert = readPem(certPath, "SMTP_TLS_CERT");
  // Each file on its own first: the TLS library's error about the pair ("BAD_DECRYPT",
  // "NO_START_LINE") would send the admin comparing two files when one is encrypted, cut short
  // or swapped with the other.
  const keyFault = keyProblem(key);
  if (keyFault) throw new CliError(`SMTP_TLS_KEY=${keyPath} ${keyFault}`);
  const certFault = certificateProblem(cert);
  if (certFault) throw new CliError(`SMTP_TLS_CERT=${certPath} ${certFault}`);
  try {
    createSecureContext({ key, cert });
  } catch (err) {
    const later = laterMatchingCertificate(key, cert);
    if (later !== null) {
      throw new CliError(
        `SMTP_TLS_CERT=${certPath} is in the wrong order: the key in SMTP_TLS_KEY=${keyPath} belongs to certificate ${later} of the file, ` +
          "but the server's certificate must come first, then its intermediates (certbot's fullchain.pem order)",
      );
    }
    throw new CliError(
      `SMTP_TLS_KEY=${keyPath} and SMTP_TLS_CERT=${certPath} are not a matching PEM key and certificate: ${describeError(err)}`,
    );
  }
  return { key, cert };
}

/**
 * The position (1-based) of a certificate after the first that the key belongs to, or null: a
 * chain concatenated intermediate-first (`cat chain.pem cert.pem`) fails as a "mismatch", and the
 * admin compares the key with the first certificate, which indeed does not match.
 */
function laterMatchingCertificate(key: Buffer, cert: Buffer): number | null {
  const blocks = cert.toString("latin1").match(PEM_CERTIFICATE_BLOCK) ?? [];
  try {
    const privateKey = createPrivateKey(key);
    for (let i = 1; i < blocks.length; i++) if (new X509Certificate(blocks[i] ?? "").checkPrivateKey(privateKey)) return i + 1;
  } catch {
    // Unreadable here too: the general message stands.
  }
  return null;
}

const UTF8_BOM = Buffer.from([0xef, 0xbb, 0xbf]);
/** A key and a chain of a few certificates are a few KB; a CA bundle by mistake about 200 KB. */
const MAX_PEM_FILE_BYTES = 1024 * 1024;

function readPem(path: string, variable: string): Buffer {
  let data: Buffer;
  try {
    // A regular file of sane size: a FIFO at the path (even for a moment) blocked this read, on
    // the event loop, until a signal; every session and /healthz waited with it.
    data = readConfigFileSync(path, MAX_PEM_FILE_BYTES);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? describeError(err);
    if (code === "ENOTREG") throw new CliError(`${variable}=${path} is not a regular file (a FIFO, a device or a directory): point it at the PEM file`);
    if (code === "EFBIG") throw new CliError(`${variable}=${path} is larger than ${MAX_PEM_FILE_BYTES} bytes: not a PEM key or certificate chain`);
    // At start-up or at a reload under a descriptor shortage (smtp/descriptor-guard.ts): the file is fine.
    if (code === "EMFILE" || code === "ENFILE") throw new CliError(`${variable}=${path} cannot be read now: the process is out of file descriptors (${code}); the file itself is not the problem`);
    throw new CliError(`${variable}=${path} cannot be read (${code}): check the path and permissions`);
  }
  if (!data.includes("-----BEGIN")) throw new CliError(`${variable}=${path} is not a PEM file`);
  // A file saved by an editor that starts UTF-8 with a byte order mark (Windows Notepad): the
  // openssl command reads it, the TLS library here refuses it ("NO_START_LINE").
  return data.subarray(0, 3).equals(UTF8_BOM) ? data.subarray(3) : data;
}

const SWAPPED = "(are SMTP_TLS_KEY and SMTP_TLS_CERT swapped?)";

/** What makes the key file unusable on its own, or null. */
function keyProblem(key: Buffer): string | null {
  const text = key.toString("latin1");
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: *4,ENCRYPTED/.test(text)) {
    return "is encrypted (protected by a passphrase), and serve cannot ask for one: write it out unencrypted (openssl pkey -in KEY -out KEY.plain) to a file only mailgw can read";
  }
  if (!/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(text)) {
    return text.includes("-----BEGIN CERTIFICATE-----") ? `holds a certificate, not a private key ${SWAPPED}` : "holds no PEM private key";
  }
  try {
    createPrivateKey(key);
  } catch (err) {
    return `is not a readable private key (cut short or damaged?): ${describeError(err)}`;
  }
  return null;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----/g;
const PEM_CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** What makes the certificate file unusable on its own, or null. */
function certificateProblem(cert: Buffer): string | null {
  const text = cert.toString("latin1");
  const begun = (text.match(PEM_CERTIFICATE) ?? []).length;
  if (begun === 0) return /PRIVATE KEY-----/.test(text) ? `holds a private key, not a certificate ${SWAPPED}` : "holds no PEM certificate";
  const blocks = text.match(PEM_CERTIFICATE_BLOCK) ?? [];
  if (blocks.length !== begun) return `is cut short: certificate ${blocks.length + 1} of ${begun} has no END line (a partly written file?)`;
  for (const [i, block] of blocks.entries()) {
    try {
      new X509Certificate(block);
    } catch (err) {
      return `is damaged: certificate ${i + 1} of ${begun} cannot be read: ${describeError(err)}`;
    }
  }
  return null;
}

/**
 * Calls `onChange` (debounced) whenever the files, or for symlinks their targets, change
 * (watch-files.ts). Returns a function that stops
 * watching. Watch errors go to `onError`.
 */
export function watchTlsFiles(
  paths: readonly string[],
  onChange: () => void,
  onError: (err: unknown) => void,
  debounceMs = TLS_RELOAD_DEBOUNCE_MS,
): () => void {
  return watchFiles(paths, { debounceMs, onChange, onError });
}

/**
 * A warning when SMTP_TLS_CERT holds a CA-issued server certificate without its intermediate:
 * alone (certbot's cert.pem instead of fullchain.pem), or followed by certificates none of which
 * issued it (an intermediate kept from an earlier certificate: Let's Encrypt's R3 after the
 * switch to R10/R11, a hand-built chain). The handshake works, but senders that verify (MTA-STS,
 * DANE with a CA usage, `smtp_tls_security_level = verify`) cannot build the chain and defer or
 * bounce. null when the issuer is there, or the server certificate is self-signed.
 */
export function missingChainWarning(certPath: string, cert: Buffer): string | null {
  let certificates: X509Certificate[];
  try {
    certificates = (cert.toString("latin1").match(PEM_CERTIFICATE_BLOCK) ?? []).map((block) => new X509Certificate(block));
  } catch {
    return null;
  }
  const [leaf, ...rest] = certificates;
  if (!leaf || leaf.checkIssued(leaf)) return null;
  const issuer = oneLine(leaf.issuer);
  const senders = "senders that verify certificates (MTA-STS, DANE) cannot build the chain";
  if (rest.length === 0) {
    return `SMTP_TLS_CERT=${certPath} holds only the server certificate, without the intermediate of its issuer (${issuer}): ${senders}; point it at the full chain (certbot: fullchain.pem, not cert.pem)`;
  }
  if (rest.some((candidate) => issuedBy(leaf, candidate))) return null;
  const after = rest.map((c) => oneLine(c.subject)).join("; ");
  return `SMTP_TLS_CERT=${certPath} does not hold the issuer of its server certificate (${issuer}): the certificates after it (${after}) did not issue it, so ${senders}; use the chain that came with this certificate (certbot: fullchain.pem), not an intermediate kept from an earlier one`;
}

/**
 * Warnings for files holding more than one server's material: Postfix's smtpd_tls_chain_files
 * file (an RSA key and chain, then an ECDSA key and chain) given as both paths, or two
 * certificates concatenated. Loading takes the first key and sends every certificate after the
 * first as its chain, so the second pair was silently not served (an ECDSA-only client failed
 * its handshake) and senders got a server certificate in the chain.
 */
export function extraPairWarnings(keyPath: string, key: Buffer, certPath: string, cert: Buffer): string[] {
  const warnings: string[] = [];
  const keys = (key.toString("latin1").match(PEM_PRIVATE_KEY) ?? []).length;
  if (keys > 1) {
    warnings.push(
      `SMTP_TLS_KEY=${keyPath} holds ${keys} private keys: only the first is used, with the first certificate of SMTP_TLS_CERT (mailgw serves one key and certificate, not an RSA and an ECDSA pair as Postfix's smtpd_tls_chain_files); keep one pair`,
    );
  }
  let later: X509Certificate[];
  try {
    later = (cert.toString("latin1").match(PEM_CERTIFICATE_BLOCK) ?? []).slice(1).map((block) => new X509Certificate(block));
  } catch {
    return warnings;
  }
  const position = later.findIndex((c) => !c.ca);
  const leaf = later[position];
  if (leaf) {
    warnings.push(
      `SMTP_TLS_CERT=${certPath} holds a server certificate after the first (certificate ${position + 2}, ${oneLine(leaf.subject)}): it is not served as such but sent to senders as part of the first one's chain; keep the server certificate and its intermediates only`,
    );
  }
  return warnings;
}

const PEM_PRIVATE_KEY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/g;

/** Names match and the signature verifies with the candidate's key (a same-named intermediate with another key is not it). */
function issuedBy(cert: X509Certificate, candidate: X509Certificate): boolean {
  try {
    return cert.checkIssued(candidate) && cert.verify(candidate.publicKey);
  } catch {
    return false;
  }
}

function oneLine(name: string): string {
  return name.replace(/\n/g, ", ");
}

/** True when two loads carry the same bytes (nothing to reload). */
export function sameMaterial(a: TlsMaterial, b: TlsMaterial): boolean {
  return a.key.equals(b.key) && a.cert.equals(b.cert);
}

/** What identifies the served certificate in the log (the first one of the file: the leaf). */
export interface CertificateInfo {
  serial: string;
  subject: string;
  notBefore: Date;
  notAfter: Date;
}

export function certificateInfo(cert: Buffer): CertificateInfo | null {
  try {
    const leaf = new X509Certificate(cert);
    return { serial: leaf.serialNumber, subject: oneLine(leaf.subject), notBefore: new Date(leaf.validFrom), notAfter: new Date(leaf.validTo) };
  } catch {
    return null;
  }
}

export function isExpired(info: CertificateInfo | null, now: number): boolean {
  return info !== null && info.notAfter.getTime() <= now;
}
