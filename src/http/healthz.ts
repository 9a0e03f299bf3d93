/**
 * GET /healthz (open even with STATS_TOKEN, for Docker and load balancers): 200 when the SMTP
 * listener accepts connections, the database answers (and is still the file at DATABASE_URL,
 * and, when the last commit of a received message failed, a write goes through now) and the data dir's spool takes a write; 503 with the reason otherwise. A missing relay is a warning, not a failure (SPEC §2: forwards are held);
 * so is a suspended one (it failed itself: forwards wait, mail is still received);
 * so are a refused rules or TLS certificate reload and an expired or soon-expiring STARTTLS
 * certificate (mail still flows: senders mostly use opportunistic TLS), and rules on SPF/DKIM/DMARC
 * with no DNS name server configured (they see temperror), and a disk with less free space than
 * 1.5× the message size limit (smaller messages are still stored; larger ones get 452 or 451).
 * Out of file descriptors (smtp/descriptor-guard.ts), every new SMTP client gets 421: 503.
 * Trusts: nothing from the request. The answer names no paths (the endpoint is unauthenticated);
 * the full detail goes to the log when health changes.
 * Failure: each probe's failure becomes its reason; the probes themselves never throw.
 */
import type { Database } from "bun:sqlite";
import { randomBytes } from "node:crypto";
import { unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeError } from "../errors.ts";
import { databaseFileProblem, type DatabaseFile } from "../store/db-file.ts";
import { VERSION_STRING } from "../version.ts";
import { uptimeSeconds, type StatusSource, type TlsCertificateStatus } from "./status-source.ts";
import { RELAY_MISSING_WARNING, relaySuspendedWarning } from "./stats-data.ts";

/** A data dir probe slower than this counts as unusable: a hung disk must not hang the health check. */
const DATA_DIR_PROBE_TIMEOUT_MS = 2000;

export interface CheckResult {
  ok: boolean;
  /** Why not, in words safe for an unauthenticated client. */
  reason?: string;
  /** Full detail for the log (may name paths). */
  detail?: string;
}

export interface HealthReport {
  status: "ok" | "unhealthy";
  reason?: string;
  version: string;
  uptimeSeconds: number;
  checks: { smtp: CheckResult; database: CheckResult; dataDir: CheckResult };
  warnings: string[];
}

export async function checkHealth(db: Database, dataDir: string, status: StatusSource, now: number, dbFile: DatabaseFile | null = null): Promise<HealthReport> {
  const checks = {
    smtp: checkSmtp(status),
    database: await checkDatabase(db, dbFile, status),
    dataDir: await checkDataDir(dataDir, status),
  };
  const failed = Object.entries(checks).filter(([, c]) => !c.ok);
  const warnings: string[] = [];
  const relay = safe(() => status.relay(), null);
  if (relay !== null && !relay.configured) warnings.push(RELAY_MISSING_WARNING);
  if (relay?.suspended) warnings.push(relaySuspendedWarning(relay.suspended.since));
  const rulesError = safe(() => status.rules().lastError, null);
  if (rulesError !== null) warnings.push("the last rules reload was refused; the previous rules are in force");
  warnings.push(...tlsWarnings(safe(() => status.tlsCertificate?.() ?? null, null), now));
  const dns = safe(() => status.dnsWarning?.() ?? null, null);
  if (dns !== null) warnings.push(dns);
  warnings.push(...safe(() => status.diskWarnings?.() ?? [], []));
  return {
    status: failed.length === 0 ? "ok" : "unhealthy",
    ...(failed.length > 0 ? { reason: failed.map(([name, c]) => `${name}: ${c.reason}`).join("; ") } : {}),
    version: VERSION_STRING,
    uptimeSeconds: uptimeSeconds(status, now),
    checks,
    warnings,
  };
}

/** The report as sent: without the `detail` fields, which may name paths. */
export function publicHealthReport(report: HealthReport): HealthReport {
  const strip = (c: CheckResult): CheckResult => (c.ok ? { ok: true } : { ok: false, reason: c.reason ?? "failed" });
  return {
    ...report,
    checks: { smtp: strip(report.checks.smtp), database: strip(report.checks.database), dataDir: strip(report.checks.dataDir) },
  };
}

function checkSmtp(status: StatusSource): CheckResult {
  try {
    if (!status.smtpListening()) return { ok: false, reason: "SMTP listener is not accepting connections" };
    if (status.smtpOutOfDescriptors?.()) return { ok: false, reason: "out of file descriptors: new SMTP clients get 421" };
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: "SMTP listener state unknown", detail: describeError(err) };
  }
}

async function checkDatabase(db: Database, dbFile: DatabaseFile | null, status: StatusSource): Promise<CheckResult> {
  try {
    db.query("SELECT COUNT(*) FROM meta").get();
  } catch (err) {
    return { ok: false, reason: "database query failed", detail: describeError(err) };
  }
  // A full or read-only database still answers queries while every message gets 451.
  const writeFailure = await Promise.resolve(safe(() => status.databaseWriteFailure?.() ?? null, null)).catch(() => null);
  if (writeFailure !== null) {
    return { ok: false, reason: "the last commit of a received message failed; every message gets 451", detail: writeFailure };
  }
  const problem = dbFile === null ? null : databaseFileProblem(dbFile);
  return problem === null ? { ok: true } : { ok: false, ...problem };
}

/**
 * The probe goes where every message is written first: the spool. DATA_DIR itself taking a write
 * said "ok" while a removed or root-owned spool/ got every message a 451. Named `.tmp`, so one
 * left by a crash is removed by the next start's recovery like any unfinished spool write.
 */
async function checkDataDir(dataDir: string, status: StatusSource): Promise<CheckResult> {
  const spoolDir = join(dataDir, "spool");
  const probe = join(spoolDir, `.healthz-${process.pid}-${randomBytes(6).toString("hex")}.tmp`);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${DATA_DIR_PROBE_TIMEOUT_MS} ms`)), DATA_DIR_PROBE_TIMEOUT_MS);
  });
  try {
    // The spool takes a write, but the archive may not (a file where today's directory goes, its
    // own file system full): archive-only messages got 451, or waited in the spool, while this said ok.
    const fileFailure = await Promise.race([
      writeFile(probe, "ok\n", { flag: "wx" }).then(() => unlink(probe)).then(() => safe(() => status.fileWriteFailure?.() ?? null, null)),
      timeout,
    ]);
    if (fileFailure !== null) return { ok: false, reason: "the last message file (spool or archive) could not be written", detail: fileFailure };
    return { ok: true };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { ok: false, reason: `data dir is not writable${code ? ` (${code})` : ""}`, detail: `${spoolDir}: ${describeError(err)}` };
  } finally {
    clearTimeout(timer);
  }
}

/** A certificate this close to its end (or a third of its lifetime, if shorter) has missed its renewal. */
const CERTIFICATE_WARNING_MS = 14 * 86_400_000;

/**
 * An expired or soon-expiring STARTTLS certificate, and a refused reload (a renewal that keeps
 * failing): until now only in the log, at start or at the reload. The dates are not secret
 * (any client sees the certificate); the reason, which names files, stays in the log.
 */
function tlsWarnings(tls: TlsCertificateStatus | null, now: number): string[] {
  if (tls === null) return [];
  const warnings: string[] = [];
  if (tls.reloadRefused) warnings.push("the last TLS certificate reload was refused (the log says why); the previous certificate is in force");
  if (tls.notAfter === null) return warnings;
  const end = new Date(tls.notAfter).toISOString();
  const lifetime = tls.notBefore === null ? Infinity : tls.notAfter - tls.notBefore;
  if (tls.notBefore !== null && tls.notBefore > now) {
    // A renewal copied in early, or a clock behind: served, but refused by senders that verify.
    warnings.push(`the STARTTLS certificate is not valid before ${new Date(tls.notBefore).toISOString()}: senders that verify certificates will not deliver over it until then`);
  } else if (tls.notAfter <= now) {
    warnings.push(`the STARTTLS certificate expired on ${end}: senders that verify certificates will not deliver over it; renew it`);
  } else if (tls.notAfter - now < Math.min(CERTIFICATE_WARNING_MS, lifetime / 3)) {
    const days = Math.floor((tls.notAfter - now) / 86_400_000);
    const left = days === 0 ? "less than a day" : `${days} day${days === 1 ? "" : "s"}`;
    warnings.push(`the STARTTLS certificate expires on ${end} (in ${left}): check that its renewal works`);
  }
  return warnings;
}

function safe<T>(get: () => T, fallback: T): T {
  try {
    return get();
  } catch {
    return fallback;
  }
}
