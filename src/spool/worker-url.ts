/**
 * Where a worker file is, for `new Worker(...)`, the same way for every worker of mailgw.
 * From source: the file below src/ (resolved from this file's own URL). In the executable
 * built by scripts/build.ts, which lists each worker in WORKER_ENTRYPOINTS, the modules live
 * in Bun's embedded file system (`/$bunfs/root/...`) and a worker is started by its path
 * relative to src/ (`./spool/syncfs-worker.ts` → `/$bunfs/root/spool/syncfs-worker.js`);
 * test/e2e/binary-workers.test.ts checks that the compiled gateway really runs them.
 * Trusts: a constant path given by the caller. Failure: none here; a wrong path makes
 * `new Worker` fail, which each caller turns into its fallback.
 */

/** True inside the compiled executable (modules are served from Bun's embedded file system). */
export function inCompiledExecutable(): boolean {
  return import.meta.url.includes("/$bunfs/");
}

/** Specifier of a worker file given by its path below src/, e.g. "parse/parse-worker.ts". */
export function workerSpecifier(pathBelowSrc: string): string {
  if (inCompiledExecutable()) return `./${pathBelowSrc}`;
  return new URL(`../${pathBelowSrc}`, import.meta.url).href;
}
