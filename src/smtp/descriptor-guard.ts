/**
 * What serve does when the process runs out of file descriptors (EMFILE: its own limit;
 * ENFILE: the system's), whatever took them: HTTP clients, deliveries, a limit lowered under a
 * running serve, a neighbour filling the system's file table.
 *
 * Why: Bun's accept loop, finding a connection waiting on a listener and no descriptor for it,
 * tries again on every turn of the event loop: one core at 100%, the clients waiting without a
 * greeting (SMTP) or an answer (/healthz) until descriptors came free, and nothing in the log.
 * It cannot be paused from JavaScript, so the guard does what libev and Marc Lehmann's
 * "accept and close" advice do: it keeps a few descriptors in reserve (/dev/null), sees the
 * limit reached with a probe open every CHECK_MS, and then releases them. The accept loop then
 * succeeds: an SMTP client is answered `421 4.3.2` at once and its socket closed (front.ts),
 * which frees the descriptor for the next one in the backlog; a message whose DATA ends can
 * still get its spool file. The reserve is taken back once it and HEADROOM more can be
 * opened: then new clients are served again.
 *
 * Trusts: nothing. Failure: a /dev/null that cannot be opened at start (no such device) turns
 * the guard off with a debug line; nothing here throws.
 */
import { closeSync, openSync, readdirSync } from "node:fs";
import type { Logger } from "../log/logger.ts";
import { describeError } from "../errors.ts";

/**
 * Descriptors held in reserve (part of limits.ts FILE_DESCRIPTOR_RESERVE): one lets the SMTP
 * accept loop drain its backlog with 421s; the others let the HTTP listener answer /healthz and a
 * DATA under way open its spool file.
 */
export const DESCRIPTOR_RESERVE = 8;
/** Free descriptors, beyond the reserve, needed to leave the shortage: no flapping at the edge. */
export const DESCRIPTOR_HEADROOM = 8;
/** How often the probe runs: the longest a shortage spins a core before it is seen. */
const CHECK_MS = 1_000;
/** How often a shortage checks whether descriptors came free. */
const SHORT_CHECK_MS = 250;
/** A shortage is a warning at most this often (with the shortages since the last one). */
const WARNING_INTERVAL_MS = 60_000;

const OUT_OF_DESCRIPTORS = new Set(["EMFILE", "ENFILE"]);

export interface DescriptorGuard {
  /** True while the process is out of descriptors: new SMTP clients get 421 4.3.2. */
  short(): boolean;
  /** Counts a client refused because of the shortage (for the recovery line). */
  noteRefused(): void;
  /** One check, as the timer runs it (tests). */
  check(): void;
  stop(): void;
}

export interface DescriptorGuardOptions {
  logger: Logger;
  /** Opens a descriptor that costs nothing (default /dev/null); throws as openSync does. */
  open?: () => number;
  close?: (fd: number) => void;
  /** Open descriptors now, or null if they cannot be counted (for the log). */
  openCount?: () => number | null;
}

export function startDescriptorGuard(opts: DescriptorGuardOptions): DescriptorGuard {
  const open = opts.open ?? (() => openSync("/dev/null", "r"));
  const close = opts.close ?? closeSync;
  const openCount = opts.openCount ?? countOpenDescriptors;
  let reserve: number[] = [];
  let isShort = false;
  let shortSince = 0;
  let refused = 0;
  let warnedAt = -Infinity;
  let shortages = 0;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let stopped = false;

  /** Opens `n` descriptors; all of them, or none (those opened are closed again) and the error. */
  const openAll = (n: number): { fds: number[]; error: unknown } => {
    const fds: number[] = [];
    try {
      while (fds.length < n) fds.push(open());
      return { fds, error: null };
    } catch (err) {
      for (const fd of fds) close(fd);
      return { fds: [], error: err };
    }
  };

  const enterShortage = (error: unknown): void => {
    for (const fd of reserve.splice(0)) close(fd);
    isShort = true;
    shortSince = performance.now();
    refused = 0;
    shortages++;
    if (shortSince - warnedAt < WARNING_INTERVAL_MS) return;
    warnedAt = shortSince;
    opts.logger.warn("out of file descriptors: new SMTP clients get 421 4.3.2 until some are free", {
      error: describeError(error),
      open_files: openCount(),
      shortages,
      hint: "see what holds them (ls -l /proc/PID/fd); raise LimitNOFILE (systemd), --ulimit nofile (Docker) or fs.file-max for ENFILE",
    });
    shortages = 0;
  };

  const leaveShortageIfFree = (): void => {
    const { fds, error } = openAll(DESCRIPTOR_RESERVE + DESCRIPTOR_HEADROOM);
    if (error !== null) return;
    for (const fd of fds.splice(DESCRIPTOR_RESERVE)) close(fd);
    reserve = fds;
    isShort = false;
    opts.logger.info("file descriptors free again: new SMTP clients are served", {
      short_ms: Math.round(performance.now() - shortSince),
      refused,
    });
  };

  const check = (): void => {
    if (stopped) return;
    if (isShort) return leaveShortageIfFree();
    const probe = openAll(1);
    if (probe.error === null) return probe.fds.forEach(close);
    if (isOutOfDescriptors(probe.error)) enterShortage(probe.error);
  };

  const schedule = (): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      check();
      schedule();
    }, isShort ? SHORT_CHECK_MS : CHECK_MS);
    timer.unref();
  };

  const first = openAll(DESCRIPTOR_RESERVE);
  if (first.error !== null) {
    opts.logger.debug("no file-descriptor guard: cannot open /dev/null", { error: describeError(first.error) });
    stopped = true;
  } else {
    reserve = first.fds;
    schedule();
  }

  return {
    short: () => isShort,
    noteRefused: () => void refused++,
    check,
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      isShort = false;
      for (const fd of reserve.splice(0)) close(fd);
    },
  };
}

function isOutOfDescriptors(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code !== undefined && OUT_OF_DESCRIPTORS.has(code);
}

/** Entries of /proc/self/fd (the listing's own descriptor included), or null without /proc. */
function countOpenDescriptors(): number | null {
  try {
    return readdirSync("/proc/self/fd").length;
  } catch {
    return null;
  }
}
