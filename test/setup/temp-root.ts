/**
 * Preloaded by `bun test` (bunfig.toml): every temporary file or directory a test makes through
 * `os.tmpdir()` goes under one directory, removed when the test file ends (`npm test` runs the
 * files in parallel worker processes, each file isolated, so this runs once per file; a plain
 * `bun test` of several files runs it once for all of them). Test files make thousands of data
 * dirs, spools and copied executables; removing each where it is made was easy to forget, and
 * repeated runs filled a developer's disk (70 GB in /tmp after a few days).
 * `KEEP_TEST_TMP=1` keeps the directory to look at after a failure; its path is printed then.
 */
import { afterAll } from "bun:test";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const PREFIX = "mailgw-test-run-";
/** In each run's directory: the pid of the test process that made it. */
const OWNER_FILE = ".owner-pid";

/**
 * Directories of earlier runs whose test process is gone: a worker that ended without running
 * the afterAll below (seen with `--parallel`: one run in a few left its whole directory, 72 MB)
 * would otherwise leave them for good. A directory without the owner file is left alone (made by
 * an older checkout, or being made now).
 */
function removeOrphans(base: string): void {
  for (const name of readdirSync(base)) {
    if (!name.startsWith(PREFIX)) continue;
    const dir = join(base, name);
    try {
      const pid = Number(readFileSync(join(dir, OWNER_FILE), "utf8"));
      if (!Number.isInteger(pid) || pid <= 0 || processAlive(pid)) continue;
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // no owner file, or removed meanwhile by another run
    }
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

const base = tmpdir();
removeOrphans(base);
const root = mkdtempSync(join(base, PREFIX));
// Sticky and world-writable like /tmp itself: some tests run serve as another user.
chmodSync(root, 0o1777);
writeFileSync(join(root, OWNER_FILE), String(process.pid));
process.env.TMPDIR = root;

// With a timeout of its own: this runs after the last test file, and removing the whole run's
// files (thousands of data dirs and spools) took over bun's 5 s hook default on a loaded CI
// machine, failing the run as an "(unnamed)" hook after whichever file ran last (serve-ipv6).
afterAll(
  () => {
    if (process.env.KEEP_TEST_TMP === "1") {
      console.log(`test files kept in ${root}`);
      return;
    }
    rmSync(root, { recursive: true, force: true, maxRetries: 3 });
  },
  { timeout: 120_000 },
);
