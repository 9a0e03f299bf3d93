/**
 * Stop and reload signals that reach `mailgw serve` before its own handlers are in place.
 *
 * Until a process handles SIGTERM, SIGINT or SIGHUP, the kernel's default action kills it: a
 * `systemctl stop`, a Ctrl-C or a `systemctl reload` in the first tens of milliseconds (loading
 * the serve modules, reading the configuration) ended serve with status 143 or 129 instead of
 * SPEC's clean stop with exit 0. This module is the first import of src/main.ts, so for `serve`
 * the handlers are in before any other module loads: a stop signal is remembered and honoured
 * by serve/signals.ts once it takes over, a second one exits at once with 1 (as later), and a
 * SIGHUP is ignored (the rules and certificate are being read anyway).
 * Other commands keep the default actions: they do not run long enough to stop gracefully.
 */

let pendingStop: NodeJS.Signals | null = null;

function onEarlyStop(signal: NodeJS.Signals): void {
  if (pendingStop !== null) process.exit(1);
  pendingStop = signal;
}

function onEarlyHup(): void {}

const STOP_SIGNALS = ["SIGTERM", "SIGINT"] as const;

if (process.argv.slice(2).find((a) => !a.startsWith("-")) === "serve") {
  for (const signal of STOP_SIGNALS) process.on(signal, onEarlyStop);
  process.on("SIGHUP", onEarlyHup);
}

/**
 * Removes the early handlers (call it after installing the real ones, so there is no gap) and
 * returns the stop signal that came in before, if any.
 */
export function takeEarlySignals(): NodeJS.Signals | null {
  for (const signal of STOP_SIGNALS) process.off(signal, onEarlyStop);
  process.off("SIGHUP", onEarlyHup);
  const signal = pendingStop;
  pendingStop = null;
  return signal;
}
