/**
 * A webhook receiver in Python (test/helpers/webhook_receiver.py, standard library only) that
 * checks the signature with README's own recipe: the ```python block of README.md that defines
 * `verify` is written, as it stands, to readme_verify.py next to the receiver. If README's
 * recipe does not work as written, the tests that use this receiver fail.
 *
 * The receiver runs in the foreground from its temp dir, is stopped by its own pid, and can be
 * started again on the same port and output dir (a backend that was down comes back).
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { findTool, REPO_ROOT } from "../packaging/binary.ts";

export const PYTHON = findTool("python3");
const START_MS = 10_000;

/** One post as the receiver recorded it (webhook_receiver.py `summary`); `error` when refused. */
export interface ReceivedPost {
  n: number;
  path: string;
  error?: string;
  id: string;
  timestamp: number;
  headerTimestamp: string | null;
  duplicate: boolean;
  contentType: string | null;
  userAgent: string | null;
  bodyLength: number;
  subject: string | null;
  messageId: string | null;
  from: { name: string; address: string } | null;
  to: { name: string; address: string }[];
  envelope: { mailFrom: string; rcptTo: string[]; clientIp: string; helo: string; tls: boolean };
  rule: string | null;
  category: string;
  text: string | null;
  html: string | null;
  attachments: { filename: string | null; contentType: string; size: number; disposition: string | null; contentId: string | null; names: string[] }[];
  headerNames: string[];
  size: number;
  rawLength: number;
}

export interface PythonReceiver {
  port: number;
  url(path?: string): string;
  /** Every post recorded so far, in arrival order. */
  posts(): ReceivedPost[];
  /** The decoded `raw` of post `n`. */
  raw(n: number): Buffer;
  /** What the receiver printed (tracebacks), for failure messages. */
  output(): string;
  stop(): Promise<void>;
  /** Starts it again on the same port, keeping what it recorded. */
  restart(): Promise<void>;
  /** Stops it and removes its directory. */
  cleanup(): Promise<void>;
}

const running = new Set<Subprocess>();
process.on("exit", () => {
  for (const p of running) p.kill("SIGKILL");
});

/** Why the Python receiver cannot run here, or null. */
export function pythonSkipReason(): string | null {
  if (!PYTHON) return "python3 not installed (apt-get install -y python3)";
  const r = Bun.spawnSync([PYTHON, "-c", "import http.server, hmac, hashlib, base64, json"], { stdout: "pipe", stderr: "pipe" });
  return r.exitCode === 0 ? null : `python3 lacks its standard library: ${r.stderr.toString().trim()}`;
}

/** README's Python recipe: the ```python block that defines `verify`. */
export function readmeVerifyRecipe(): string {
  const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
  const block = [...readme.matchAll(/```python\n([\s\S]*?)```/g)].map((m) => m[1] ?? "").find((b) => /^def verify\(/m.test(b));
  if (!block) throw new Error("README.md has no ```python block defining verify()");
  return block;
}

export async function startPythonReceiver(port: number, secret: string): Promise<PythonReceiver> {
  const dir = mkdtempSync(join(tmpdir(), "mailgw-py-hook-"));
  const out = join(dir, "out");
  mkdirSync(out);
  copyFileSync(join(import.meta.dir, "webhook_receiver.py"), join(dir, "webhook_receiver.py"));
  writeFileSync(join(dir, "readme_verify.py"), readmeVerifyRecipe());
  let proc: Subprocess<"ignore", "pipe", "pipe"> | null = null;
  let text = "";

  const launch = async () => {
    const p = Bun.spawn([PYTHON ?? "python3", "-u", "webhook_receiver.py", String(port), out, secret], { cwd: dir, stdout: "pipe", stderr: "pipe" });
    proc = p;
    running.add(p);
    let listening = false;
    const collect = async (s: ReadableStream<Uint8Array>) => {
      for await (const chunk of s) {
        text += new TextDecoder().decode(chunk);
        if (text.includes(`listening on ${port}`)) listening = true;
      }
    };
    void collect(p.stdout);
    void collect(p.stderr);
    const deadline = Date.now() + START_MS;
    while (!listening) {
      if (p.exitCode !== null || Date.now() > deadline) throw new Error(`python receiver not listening on ${port}: ${text}`);
      await Bun.sleep(25);
    }
  };
  const stop = async () => {
    const p = proc;
    if (!p) return;
    p.kill("SIGTERM");
    await p.exited;
    running.delete(p);
    proc = null;
  };
  await launch();

  return {
    port,
    url: (path = "/hook") => `http://127.0.0.1:${port}${path}`,
    posts() {
      const file = join(out, "received.jsonl");
      if (!existsSync(file)) return [];
      return readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as ReceivedPost);
    },
    raw: (n) => readFileSync(join(out, `${n}.eml`)),
    output: () => text,
    stop,
    restart: launch,
    async cleanup() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
