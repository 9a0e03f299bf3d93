/**
 * Test helper: a fresh dist/mailgw, hard-linked (or copied) outside the repository, and a
 * way to run it with a PATH that holds neither bun nor node_modules.
 *
 * The executable is rebuilt (scripts/build.ts, atomic rename) only when it is missing or older
 * than any source file, so one `bun test` run builds at most once and .ci/run's own build is
 * reused. A failed build throws with bun's output: a test against a stale binary would lie.
 */
import { chmodSync, copyFileSync, existsSync, linkSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createServer, type AddressInfo, type Server } from "node:net";

export const REPO_ROOT = resolve(import.meta.dir, "../..");
export const DIST_BINARY = join(REPO_ROOT, "dist/mailgw");
/** PATH for the copied executable: system tools only (sh, kill), no bun, no node_modules. */
export const BARE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin";
/** A build takes ~1 s here; this bounds a stuck compiler. */
const BUILD_TIMEOUT_MS = 120_000;

function newestMtimeMs(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = st.mtimeMs;
  for (const entry of readdirSync(path)) newest = Math.max(newest, newestMtimeMs(join(path, entry)));
  return newest;
}

function sourcesMtimeMs(): number {
  const inputs = ["src", "package.json", "package-lock.json", "scripts/build.ts"].map((p) => join(REPO_ROOT, p));
  return Math.max(...inputs.filter(existsSync).map(newestMtimeMs));
}

/** Path of an up-to-date dist/mailgw, building it if needed. */
export function ensureBinary(): string {
  if (existsSync(DIST_BINARY) && statSync(DIST_BINARY).mtimeMs >= sourcesMtimeMs()) return DIST_BINARY;
  const proc = Bun.spawnSync([process.execPath, join(REPO_ROOT, "scripts/build.ts")], {
    cwd: REPO_ROOT,
    stdout: "pipe",
    stderr: "pipe",
    timeout: BUILD_TIMEOUT_MS,
  });
  if (proc.exitCode !== 0) {
    throw new Error(`npm run build failed (exit ${proc.exitCode}):\n${proc.stdout.toString()}${proc.stderr.toString()}`);
  }
  return DIST_BINARY;
}

export interface CopiedBinary {
  dir: string;
  bin: string;
  cleanup(): void;
}

/**
 * The executable alone in a fresh temp directory (world-readable, so other uids can run it).
 * A hard link where the file system allows it: removing a 110 MB copy in a file's afterAll
 * took over 5 s once in CI (this disk discards freed blocks synchronously), past bun's hook
 * timeout; a link's removal frees nothing. The build replaces dist/mailgw by a rename, so a
 * rebuild never changes a linked file under a running test.
 */
export function copyBinaryToTemp(): CopiedBinary {
  const dir = mkdtempSync(join(tmpdir(), "mailgw-bin-"));
  chmodSync(dir, 0o755);
  const bin = join(dir, "mailgw");
  const built = ensureBinary();
  try {
    linkSync(built, bin);
  } catch {
    copyFileSync(built, bin); // another file system (EXDEV) or no hard links
  }
  chmodSync(bin, 0o755);
  return { dir, bin, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd: string;
  env?: Record<string, string>;
  stdin?: string;
  timeoutMs?: number;
  /** Prefix argv, e.g. ["setpriv", "--reuid=65534", ...] to run as another user. */
  wrapper?: string[];
}

let cachedHideWrapper: string[] | null | undefined;

/**
 * argv prefix that runs a command with the repository hidden under an empty tmpfs (a private
 * mount namespace), so a binary that still read src/ or node_modules/ at run time would fail.
 * null when mount namespaces are not available (not root, or a restricted container).
 */
export function hideRepoWrapper(): string[] | null {
  if (cachedHideWrapper !== undefined) return cachedHideWrapper;
  const unshare = findTool("unshare");
  const wrapper = unshare
    ? [unshare, "--mount", "--propagation", "private", "sh", "-c", 'mount -t tmpfs mailgw-hidden "$0" && exec "$@"', REPO_ROOT]
    : null;
  const probe = wrapper ? Bun.spawnSync([...wrapper, "true"], { stdout: "ignore", stderr: "ignore" }) : null;
  cachedHideWrapper = probe?.exitCode === 0 ? wrapper : null;
  if (!cachedHideWrapper) console.warn("note: cannot hide the repository from the executable (needs unshare + root); running it in place");
  return cachedHideWrapper;
}

/**
 * Runs the executable with only BARE_PATH and HOME set (plus `env`), with the repository
 * hidden when the system allows it.
 */
export async function runBinary(bin: string, args: string[], opts: RunOptions): Promise<RunResult> {
  const proc = Bun.spawn([...(hideRepoWrapper() ?? []), ...(opts.wrapper ?? []), bin, ...args], {
    cwd: opts.cwd,
    env: { PATH: BARE_PATH, HOME: opts.cwd, ...opts.env },
    stdin: opts.stdin === undefined ? "ignore" : new TextEncoder().encode(opts.stdin),
    stdout: "pipe",
    stderr: "pipe",
    timeout: opts.timeoutMs ?? 30_000,
  });
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { exitCode, stdout, stderr };
}

/** Which subcommands src/main.ts registers (so tests can follow commands as they land). */
export function registeredCommands(): Set<string> {
  const main = readFileSync(join(REPO_ROOT, "src/main.ts"), "utf8");
  return new Set([...main.matchAll(/^\s+([a-z-]+): \(\) => import\(/gm)].map((m) => m[1] ?? ""));
}

/** First executable named `name` on the system PATH, or null. */
export function findTool(name: string): string | null {
  for (const dir of BARE_PATH.split(":")) {
    const candidate = join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  return null;
}

/**
 * Where freePorts picks: below 32768, so no client socket of a test file running beside this one
 * (`npm test` runs four at once) takes the port between the pick and serve's bind — Linux gives
 * client sockets and listen(0) ports from 32768–60999 only. Above the suites' own ranges (see
 * freePortsIn in test/helpers/interop.ts).
 */
const PICK_FIRST = 30000;
const PICK_COUNT = 2768;

/** `n` different ports that were free a moment ago on 127.0.0.1 (all held until each is picked). */
export async function freePorts(n: number): Promise<number[]> {
  const held: Server[] = [];
  const start = Math.floor(Math.random() * PICK_COUNT);
  for (let i = 0; i < PICK_COUNT && held.length < n; i++) {
    const server = await listening(PICK_FIRST + ((start + i) % PICK_COUNT));
    if (server) held.push(server);
  }
  const ports = held.map((server) => (server.address() as AddressInfo).port);
  await Promise.all(held.map((server) => new Promise<void>((ok) => server.close(() => ok()))));
  if (ports.length < n) throw new Error(`not ${n} free ports in ${PICK_FIRST}-${PICK_FIRST + PICK_COUNT - 1}`);
  return ports;
}

function listening(port: number): Promise<Server | null> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(null));
    server.listen({ port, host: "127.0.0.1", exclusive: true }, () => resolve(server));
  });
}

/** A port that was free a moment ago on 127.0.0.1 (for a serve that must be found on a fixed port). */
export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  if (port === undefined) throw new Error("no port");
  return port;
}
