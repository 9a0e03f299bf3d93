/**
 * CPU time of this process, for the tests that guard against a quadratic (or exponential) blow-up
 * in code that only computes. Wall-clock time measures the machine as well: with the test files
 * run in parallel (`npm test`), a 0.1 s parse took 2.5 s of wall clock on a loaded 2-core runner
 * and failed its 2 s bound, while its CPU time stays what the code costs. (Tests of waits —
 * busy timeouts, stalled peers, a session's latency — keep wall-clock bounds: there the wait is
 * the thing measured.)
 */

/** What `fn` returned, and the milliseconds of CPU (user + system, all of this process's threads) it took. */
export function withCpuMs<T>(fn: () => T): { value: T; ms: number } {
  const before = process.cpuUsage();
  const value = fn();
  return { value, ms: cpuMsSince(before) };
}

/** The same for asynchronous work: start with `process.cpuUsage()`, end with this. */
export function cpuMsSince(before: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000;
}
