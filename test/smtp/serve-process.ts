/**
 * Runs the real `mailgw serve` as a subprocess for the e2e tests: from source (`bun
 * src/main.ts serve`) or the compiled dist/mailgw (copied outside the repo). Ports are 0 and
 * read back from the JSON "mailgw serve started" log line, so parallel runs never collide.
 */
import { afterEach } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createConnection } from "node:net";
import type { Subprocess } from "bun";
import pkg from "../../package.json" with { type: "json" };
import { BARE_PATH, REPO_ROOT, copyBinaryToTemp, type CopiedBinary } from "../packaging/binary.ts";

export type ServeMode = "source" | "binary";

export interface ServeProcess {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  dir: string;
  smtpPort: number;
  httpUrl: string;
  logs: Record<string, unknown>[];
  stderr(): string;
  waitForLog(pred: (l: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>>;
  /** Resolves with the exit code once serve has exited and its output has been read into `logs`. */
  exited(): Promise<number>;
  /** Sends the signal and resolves as `exited()`. */
  stop(signal?: NodeJS.Signals): Promise<number>;
}

export const RULES_YAML = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - name: reject-spam
    priority: 100
    category: spam
    action: reject
    reject_message: "Message rejected as spam"
    conditions:
      - { field: subject, operator: contains, value: "[SPAM]" }
`;

let copied: CopiedBinary | null = null;

/** Command line for a mode; the binary is built (if stale) and copied once per test file. */
/** A process's output as the complete lines of each chunk read (a partial line waits for the next). */
export async function* logLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string[]> {
  const decoder = new TextDecoder();
  let partial = "";
  for await (const chunk of stream) {
    partial += decoder.decode(chunk, { stream: true });
    const lines = partial.split("\n");
    partial = lines.pop() ?? "";
    yield lines;
  }
}

/** `npm start` (package.json), run with this bun and the entry point made absolute. */
function startScript(): string[] {
  const [, ...args] = pkg.scripts.start.split(" ");
  return [process.execPath, ...args.map((a) => (a.endsWith(".ts") ? join(REPO_ROOT, a) : a))];
}

export function serveCommand(mode: ServeMode): string[] {
  if (mode === "source") return startScript();
  copied ??= copyBinaryToTemp();
  return [copied.bin, "serve"];
}

export function cleanupBinary(): void {
  copied?.cleanup();
  copied = null;
}

export function serveDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "mailgw-serve-e2e-"));
  writeFileSync(join(dir, "rules.yaml"), RULES_YAML);
  return dir;
}

/**
 * For a test file: `serve(env, rules)` starts serve from source in a fresh dir with that rules
 * file (or in `dir`, prepared by the test, as it is); every serve it started is killed after
 * each test.
 */
export function serveEachTest(): (env?: Record<string, string>, rules?: string, dir?: string) => Promise<ServeProcess> {
  const running: ServeProcess[] = [];
  afterEach(async () => {
    for (const s of running.splice(0)) if (s.proc.exitCode === null) await s.stop("SIGKILL");
  }, 60_000);
  return async (env = {}, rules = RULES_YAML, prepared?: string) => {
    const dir = prepared ?? serveDir();
    if (prepared === undefined) writeFileSync(join(dir, "rules.yaml"), rules);
    const s = await startServe("source", dir, env);
    running.push(s);
    return s;
  };
}

/** Runs serve to completion (for start-up failures); resolves with exit code and output. `prefix` as for startServe. */
export async function runServeOnce(mode: ServeMode, dir: string, env: Record<string, string>, args: string[] = [], ms = 15_000, prefix: string[] = []) {
  const proc = Bun.spawn([...prefix, ...serveCommand(mode), ...args], {
    cwd: dir,
    env: { PATH: BARE_PATH, HOME: dir, LOG_FORMAT: "json", SMTP_PORT: "0", HTTP_PORT: "0", ...env },
    stdout: "pipe",
    stderr: "pipe",
    timeout: ms,
  });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { exitCode, stdout, stderr };
}

/** `prefix`: a command serve runs under, e.g. `prlimit --nofile=200:200 --`. */
export async function startServe(mode: ServeMode, dir: string, env: Record<string, string> = {}, startMs = 20_000, prefix: string[] = []): Promise<ServeProcess> {
  const proc = Bun.spawn([...prefix, ...serveCommand(mode)], {
    cwd: dir,
    env: { PATH: BARE_PATH, HOME: dir, LOG_FORMAT: "json", SMTP_HOST: "127.0.0.1", SMTP_PORT: "0", HTTP_HOST: "127.0.0.1", HTTP_PORT: "0", SMTP_HOSTNAME: "mx.test", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const logs: Record<string, unknown>[] = [];
  let stderr = "";
  const listeners: (() => void)[] = [];
  const stdoutRead = (async () => {
    for await (const lines of logLines(proc.stdout)) {
      for (const line of lines) {
        try {
          logs.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          logs.push({ msg: line });
        }
      }
      for (const l of listeners.splice(0)) l();
    }
  })();
  const stderrRead = new Response(proc.stderr).text().then((t) => void (stderr = t));
  // The exit is seen apart from the pipes: serve's last lines (a session closed by the stop,
  // "stopped") may still be unread when `proc.exited` resolves. Bounded: a process that kept a
  // copy of the pipe open must not hang the test.
  const exited = async (): Promise<number> => {
    const code = await proc.exited;
    await Promise.race([Promise.all([stdoutRead, stderrRead]).catch(() => undefined), Bun.sleep(5_000)]);
    return code;
  };

  const waitForLog = async (pred: (l: Record<string, unknown>) => boolean, ms = 10_000) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = logs.find(pred);
      if (found) return found;
      if (proc.exitCode !== null) {
        await exited();
        const last = logs.find(pred);
        if (last) return last;
        throw new Error(`serve exited ${proc.exitCode}: ${stderr}`);
      }
      if (Date.now() > deadline) throw new Error(`log line not seen in ${ms} ms; logs: ${JSON.stringify(logs.slice(-5))}`);
      await new Promise<void>((r) => {
        listeners.push(r);
        setTimeout(r, 100);
      });
    }
  };
  const started = await waitForLog((l) => l.msg === "mailgw serve started", startMs);
  const smtp = String(started.smtp);
  return {
    proc,
    dir,
    smtpPort: Number(smtp.slice(smtp.lastIndexOf(":") + 1)),
    httpUrl: String(started.http),
    logs,
    stderr: () => stderr,
    waitForLog,
    exited,
    async stop(signal = "SIGTERM") {
      proc.kill(signal);
      return exited();
    },
  };
}

/** The archived copy of message `id` under a serve directory (`<dir>/data/archive/<day>/<id>.eml`), or null. */
export async function archivedCopy(dir: string, id: string): Promise<Buffer | null> {
  const root = join(dir, "data", "archive");
  for (const day of await readdir(root).catch(() => [] as string[])) {
    const file = await readFile(join(root, day, `${id}.eml`)).catch(() => null);
    if (file) return file;
  }
  return null;
}

/** Whether something accepts TCP connections on 127.0.0.1:`port` (serve started by a test's own command line). */
export async function connects(port: number): Promise<boolean> {
  try {
    const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
    s.end();
    return true;
  } catch {
    return false;
  }
}

/** Polls `check` every 50 ms until it holds; throws naming `what` after `ms`. */
export async function until(what: string, check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await Bun.sleep(50);
  }
}

/** One row of `mailgw queue list --json` (src/queue/queue-admin.ts ListedEntry). */
export interface QueueEntry {
  id: string;
  delivery: number;
  kind: string;
  state: string;
  target: string;
  attempts: number;
  nextAttemptAt: string | null;
  lastError: string | null;
  rule: string | null;
  category: string;
}

/** `mailgw queue ARGS…` as `npm run mailgw` runs it (from source), in a serve directory (its ./data), beside the running serve. */
export async function mailgwQueue(dir: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const [bun = "bun", ...flags] = pkg.scripts.mailgw.split(" ");
  const cmd = [bun === "bun" ? process.execPath : bun, ...flags.map((a) => (a.endsWith(".ts") ? join(REPO_ROOT, a) : a)), "queue", ...args];
  const proc = Bun.spawn(cmd, { cwd: dir, env: { PATH: BARE_PATH, HOME: dir, NO_COLOR: "1" }, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

/** `mailgw queue list --json` (`states`: its --state, default all but delivered); throws on a non-zero exit. */
export async function queueList(dir: string, states?: string): Promise<QueueEntry[]> {
  const r = await mailgwQueue(dir, "list", "--json", ...(states ? ["--state", states] : []));
  if (r.code !== 0) throw new Error(`queue list: exit ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as QueueEntry[];
}

/** Status of one raw HTTP/1.1 GET with the given Host header (fetch would set its own). */
export function statusWithHost(url: string, path: string, host: string): Promise<number> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    let text = "";
    const conn = createConnection({ host: "127.0.0.1", port: Number(port) }, () => conn.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
    conn.on("data", (d) => (text += d.toString()));
    conn.on("end", () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
    conn.on("error", reject);
  });
}
