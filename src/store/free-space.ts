/**
 * Free space on the file systems mail is written to: the spool (DATA_DIR/spool), the archive
 * (DATA_DIR/archive, which may be a mount of its own) and the database's directory. What
 * Postfix's smtpd does with queue_minfree: a MAIL FROM that declares (RFC 1870 SIZE=) more than
 * fits is answered `452 4.3.1 Insufficient system storage` before the client sends a byte of it,
 * and a disk with less than 1.5× the message size limit free is a warning in /healthz, on the
 * stats page and in the log, before mail is refused. Without it the first sign of a nearly full
 * disk was a 25 MB message sent in full and then answered 451, and /healthz, whose probe writes a
 * few bytes that still fit, went back to 200.
 *
 * Read in the background (statfs, once a second, one reading at a time, so a disk that stopped
 * answering leaves the last figures in force and queues no more calls); the SMTP check compares a
 * declared size with one cached number. Only when that number says "does not fit" and is older
 * than RECHECK_AFTER_MS is the disk read again first (see there). A message without SIZE= is
 * never refused here: it goes on to DATA and gets 451 4.3.0 if storing it fails (SPEC §4).
 * Trusts: nothing. Failure: never throws; a file system that cannot be read counts as having
 * enough room (the write itself still fails safely with 451), and keeps its last warning state.
 */
import { stat, statfs } from "node:fs/promises";
import { dirname, join } from "node:path";
import { describeError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";

export type DiskRole = "spool" | "archive" | "database";

/** One file system and what of mailgw's it holds; `freeBytes` null when it could not be read. */
export interface DiskReading {
  roles: DiskRole[];
  /** The directory read (the nearest existing one): for the log only, never /healthz. */
  path: string;
  freeBytes: number | null;
  /** Free inodes (one per spool or archive file); null when unreadable or the file system has no fixed count (btrfs reports 0 of 0). */
  freeInodes?: number | null;
  /** All inodes of the file system, with `freeInodes`. */
  totalInodes?: number | null;
}

const MIB = 1024 * 1024;
/** Room kept beyond a declared size: the message's rows and the WAL growing until its checkpoint. */
export const STORAGE_RESERVE_BYTES = 1 * MIB;
/**
 * Less free space than this many times MAX_MESSAGE_SIZE_MB is a warning: Postfix's figure
 * (postconf(5) queue_minfree: "at least 1.5*$message_size_limit"), room for one message of the
 * limit with a margin for the ones arriving beside it.
 */
export const LOW_SPACE_FACTOR = 1.5;
/** A warning ends only once free space is this share of the threshold above it: no line per second at the edge. */
const RECOVERY_MARGIN = 0.1;
/** How often the file systems are read. */
export const FREE_SPACE_REFRESH_MS = 1000;
/**
 * A declared size the last reading refuses is checked on a new reading when that one is older
 * than this: with the reading once a second, a sender retrying right after space was freed (old
 * archives deleted) got 452 for up to a second more. At most one such reading per interval,
 * shared by every MAIL waiting for it: a flood of MAIL during a really full disk costs at most
 * ten rounds of statfs a second more, never one per command.
 */
export const RECHECK_AFTER_MS = 100;
/** How long a MAIL waits for that reading (a disk that stopped answering): then the last figures answer. */
export const RECHECK_WAIT_MS = 250;
/** How long start waits for the first reading (a hung disk must not hold serve's start). */
const FIRST_READING_WAIT_MS = 2000;

/**
 * The biggest declared message size that fits now: the least free space of the file systems a
 * message is written to (spool, archive) less the reserve; 0 or less when a file system that holds
 * only the database has less than the reserve. Infinity when nothing could be read.
 */
export function declaredSizeLimit(readings: readonly DiskReading[]): number {
  let limit = Infinity;
  for (const r of readings) {
    if (r.freeBytes === null) continue;
    const holdsMessages = r.roles.includes("spool") || r.roles.includes("archive");
    limit = Math.min(limit, holdsMessages ? r.freeBytes - STORAGE_RESERVE_BYTES : r.freeBytes >= STORAGE_RESERVE_BYTES ? Infinity : -1);
  }
  return limit;
}

/** Below this much free space a file system is low (LOW_SPACE_FACTOR × the message size limit). */
export function lowSpaceThreshold(maxMessageBytes: number): number {
  return LOW_SPACE_FACTOR * maxMessageBytes;
}

/** Whether a file system is low now, given whether it was: in below the threshold, out only above it plus the margin; unknown keeps the state. */
export function isLow(wasLow: boolean, freeBytes: number | null, threshold: number): boolean {
  if (freeBytes === null) return wasLow;
  return wasLow ? freeBytes < threshold * (1 + RECOVERY_MARGIN) : freeBytes < threshold;
}

/**
 * Fewer free inodes than this is a warning: every message is a file (spool, archive), so a disk of
 * small archived messages can run out of inodes with gigabytes free (ext4 makes one per 16 KB),
 * and then every message gets 451. 5% of the file system's inodes, at most 50,000 (hours of mail
 * at a busy gateway's rate: time to prune or grow before it is full).
 */
export function lowInodesThreshold(totalInodes: number): number {
  return Math.min(50_000, Math.floor(totalInodes * 0.05));
}

/** The inode warning, in words safe for /healthz (no paths). */
export function lowInodesWarning(roles: readonly DiskRole[], freeInodes: number): string {
  const disk = roles.includes("spool") ? "the data dir's disk" : `the ${roles.join(" and ")} disk`;
  return `${disk} has ${freeInodes} free inodes left (each stored message is a file): when none are left, every message gets 451`;
}

/** The warning for a low file system, in words safe for /healthz (no paths). */
export function lowSpaceWarning(roles: readonly DiskRole[], freeBytes: number, maxMessageBytes: number): string {
  const disk = roles.includes("spool") ? "the data dir's disk" : `the ${roles.join(" and ")} disk`;
  const effect = roles.includes("spool")
    ? "larger messages get 452 when their size is declared, else 451"
    : roles.includes("archive")
      ? "larger messages get 452 when their size is declared, else wait in the spool"
      : "once it is full, every message gets 451";
  return `${disk} has ${megabytes(freeBytes, Math.floor)} MB free, less than ${LOW_SPACE_FACTOR}× the ${megabytes(maxMessageBytes, Math.round)} MB message size limit: ${effect}`;
}

/** Whole megabytes from 10 up; below, two significant digits (a limit of 0.5 MB, 3.2 MB free). */
function megabytes(bytes: number, round: (n: number) => number): string {
  const mb = bytes / MIB;
  return mb >= 10 ? String(round(mb)) : String(Number(mb.toPrecision(2)));
}

export interface FreeSpaceMonitor {
  /** Reads once (bounded wait), then every FREE_SPACE_REFRESH_MS. */
  start(): Promise<void>;
  stop(): void;
  /**
   * Whether a message that declared `bytes` fits: one comparison with the last reading; when
   * that says no and is older than RECHECK_AFTER_MS, the answer of a new one (a promise).
   */
  roomFor(bytes: number): boolean | Promise<boolean>;
  /** The warnings for the low file systems (empty when none). */
  warnings(): string[];
  /** Reads now (tests; the timer calls it). */
  refresh(): Promise<void>;
}

/** `read` and `now` (a monotonic clock, ms): the disks' reading and the clock, for tests. */
export function createFreeSpaceMonitor(opts: { dataDir: string; databasePath: string; maxMessageBytes: number; logger: Logger; read?: typeof readDisks; now?: () => number }): FreeSpaceMonitor {
  const { maxMessageBytes, logger, read = readDisks, now = () => performance.now() } = opts;
  const places: { role: DiskRole; path: string }[] = [
    { role: "spool", path: join(opts.dataDir, "spool") },
    { role: "archive", path: join(opts.dataDir, "archive") },
    { role: "database", path: dirname(opts.databasePath) },
  ];
  const threshold = lowSpaceThreshold(maxMessageBytes);
  let limit = Infinity;
  let current: string[] = [];
  /** File systems that are low, by their roles (a mount that comes or goes changes the key). */
  const low = new Set<string>();
  let timer: ReturnType<typeof setInterval> | null = null;
  let running: Promise<void> | null = null;
  /** When the last reading started (the figures are at most that old). */
  let readStartedAt = -Infinity;

  const apply = (readings: DiskReading[]): void => {
    limit = declaredSizeLimit(readings);
    const warnings: string[] = [];
    const keys = new Set<string>();
    for (const r of readings) {
      const key = r.roles.join("+");
      keys.add(key).add(`inodes:${key}`);
      const was = low.has(key);
      const now = isLow(was, r.freeBytes, threshold);
      if (now !== was) logCrossing(logger, r, now, threshold, maxMessageBytes);
      if (now) low.add(key);
      else low.delete(key);
      if (now && r.freeBytes !== null) warnings.push(lowSpaceWarning(r.roles, r.freeBytes, maxMessageBytes));
      if (inodesLowNow(r, low.has(`inodes:${key}`))) warnings.push(lowInodesWarning(r.roles, r.freeInodes ?? 0));
    }
    // A key no file system has any more (a mount undone) is no longer low.
    for (const key of low) if (!keys.has(key)) low.delete(key);
    current = warnings;
  };

  /** Whether `r` is low on inodes now (its state kept in `low` under `inodes:<roles>`); logs a crossing. */
  const inodesLowNow = (r: DiskReading, was: boolean): boolean => {
    const key = `inodes:${r.roles.join("+")}`;
    // Unreadable, or no fixed count: the state stays (isLow with null).
    const now = isLow(was, r.freeInodes ?? null, lowInodesThreshold(r.totalInodes ?? 0));
    if (now === was) return now;
    const fields = { disk: r.roles.join("+"), path: r.path, free_inodes: r.freeInodes, total_inodes: r.totalInodes };
    if (now) {
      low.add(key);
      logger.warn("free inodes low", { ...fields, warning: lowInodesWarning(r.roles, r.freeInodes ?? 0), hint: "remove files there (ARCHIVE_MAX_AGE_DAYS prunes the archive) or move it to a file system with more inodes" });
    } else {
      low.delete(key);
      logger.info("free inodes recovered", fields);
    }
    return now;
  };

  const refresh = (): Promise<void> => {
    if (running === null) readStartedAt = now();
    return (running ??= read(places)
      .then(apply, (err: unknown) => logger.debug("reading free disk space failed", { error: describeError(err) }))
      .finally(() => (running = null)));
  };

  const roomFor = (bytes: number): boolean | Promise<boolean> => {
    if (bytes <= limit) return true;
    // A reading under way is waited for (it may be the one that sees the space freed).
    if (running === null && now() - readStartedAt < RECHECK_AFTER_MS) return false;
    return Promise.race([refresh(), Bun.sleep(RECHECK_WAIT_MS)]).then(() => bytes <= limit);
  };

  return {
    async start() {
      await Promise.race([refresh(), Bun.sleep(FIRST_READING_WAIT_MS)]);
      timer = setInterval(() => void refresh(), FREE_SPACE_REFRESH_MS);
      timer.unref();
    },
    stop() {
      if (timer !== null) clearInterval(timer);
      timer = null;
    },
    roomFor,
    warnings: () => [...current],
    refresh,
  };
}

function logCrossing(logger: Logger, r: DiskReading, low: boolean, threshold: number, maxMessageBytes: number): void {
  const fields = { disk: r.roles.join("+"), path: r.path, free_bytes: r.freeBytes, threshold_bytes: Math.round(threshold) };
  if (!low) return logger.info("free disk space recovered", fields);
  logger.warn("free disk space low", {
    ...fields,
    warning: lowSpaceWarning(r.roles, r.freeBytes ?? 0, maxMessageBytes),
    hint: "free space there (ARCHIVE_MAX_AGE_DAYS prunes the archive) or move it to a bigger disk",
  });
}

/** The file systems of `places`, one reading each (places on the same device share it). */
async function readDisks(places: readonly { role: DiskRole; path: string }[]): Promise<DiskReading[]> {
  const byDevice = new Map<string, DiskReading>();
  for (const place of places) {
    const found = await nearestExisting(place.path);
    const key = found === null ? `?${place.path}` : String(found.dev);
    const seen = byDevice.get(key);
    if (seen) {
      seen.roles.push(place.role);
      continue;
    }
    const free = found === null ? null : await freeOn(found.path);
    byDevice.set(key, { roles: [place.role], path: found?.path ?? place.path, freeBytes: free?.bytes ?? null, freeInodes: free?.inodes ?? null, totalInodes: free?.totalInodes ?? null });
  }
  return [...byDevice.values()];
}

/** `path`, or its nearest existing parent (DATA_DIR/archive before the first archived message). */
async function nearestExisting(path: string): Promise<{ path: string; dev: number } | null> {
  for (let p = path; ; p = dirname(p)) {
    try {
      return { path: p, dev: (await stat(p)).dev };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" || dirname(p) === p) return null;
    }
  }
}

/**
 * Bytes an unprivileged writer may still use (statfs f_bavail: root's reserved blocks excluded),
 * and free inodes (f_ffree of f_files; null when the file system reports no fixed count); null
 * when unreadable.
 */
async function freeOn(path: string): Promise<{ bytes: number; inodes: number | null; totalInodes: number | null } | null> {
  try {
    const s = await statfs(path);
    // f_bavail counts fragments of f_frsize (which Bun reports; Node's type lacks it); f_bsize when absent.
    const unit = (s as { frsize?: number }).frsize || s.bsize;
    const totalInodes = Number(s.files);
    return { bytes: Number(s.bavail) * Number(unit), inodes: totalInodes > 0 ? Number(s.ffree) : null, totalInodes: totalInodes > 0 ? totalInodes : null };
  } catch {
    return null;
  }
}
