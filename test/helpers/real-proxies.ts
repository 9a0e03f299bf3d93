/**
 * Real nginx (`stream`, PROXY v1) and HAProxy (`send-proxy`, `send-proxy-v2`) in front of the
 * real `mailgw serve`, for the interoperability tests, and nginx as the HTTP reverse proxy in
 * front of a webhook receiver. Each proxy runs in the foreground with its own config and files in
 * a temp dir, on loopback ports only (22000–22999 unless the caller names its own range), and is
 * stopped or reloaded by its own pid (never by name: other nginx or HAProxy may run on the machine).
 *
 * A missing tool, stream module or loopback address is a skip reason (printed by the caller),
 * never a silent pass.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { findTool, REPO_ROOT } from "../packaging/binary.ts";
import { collectOutput } from "./process-output.ts";

export const NGINX = findTool("nginx");
export const HAPROXY = findTool("haproxy");
/** Debian's libnginx-mod-stream; nginx built with the module in needs no load_module line. */
const STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so";
const PORT_FIRST = 22000;
const PORT_COUNT = 1000;
const START_MS = 10_000;

export interface RunningProxy {
  dir: string;
  /** What the proxy printed (stderr and stdout), for failure messages. */
  output(): string;
  /** Lines of nginx's error.log at warn level or above ([] for HAProxy, which prints them). */
  problems(): string[];
  /** Stops the proxy and removes its directory. */
  stop(): Promise<void>;
}

const running = new Set<Subprocess>();
// A test run that dies between start and stop must not leave a proxy behind.
process.on("exit", () => {
  for (const p of running) p.kill("SIGKILL");
});

function canListen(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** Why the loopback addresses these tests use are not there, or null. */
export async function loopbackSkipReason(): Promise<string | null> {
  if (!(await canListen(0, "127.0.0.2"))) return "127.0.0.2 is not a local address here (Linux routes all of 127/8 to lo)";
  if (!(await canListen(0, "::1"))) return "no IPv6 loopback (::1)";
  return null;
}

/** `n` different ports in first…first+count−1 (default 22000–22999), each free on both 127.0.0.1 and ::1 a moment ago. */
export async function pickPorts(n: number, first = PORT_FIRST, count = PORT_COUNT): Promise<number[]> {
  const start = Math.floor(Math.random() * count);
  const ports: number[] = [];
  for (let i = 0; i < count && ports.length < n; i++) {
    const port = first + ((start + i) % count);
    if ((await canListen(port, "127.0.0.1")) && (await canListen(port, "::1"))) ports.push(port);
  }
  if (ports.length < n) throw new Error(`not ${n} free ports in ${first}-${first + count - 1}`);
  return ports;
}

/**
 * Whether a socket listens on `port` (any address), as the kernel lists it. Neither a connection
 * (it would reach mailgw through the proxy) nor a bind: a probe that binds the port races the
 * proxy's own bind, which then fails once (nginx: "[emerg] bind() … Address already in use" on
 * stderr), is retried half a second later and succeeds, leaving the error in its output: an
 * intermittent failure of the "nginx logged no warning or error" checks.
 */
function listening(port: number): boolean {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const LISTEN = "0A";
  return ["/proc/net/tcp", "/proc/net/tcp6"].some((table) => {
    if (!existsSync(table)) return false;
    return readFileSync(table, "utf8").split("\n").slice(1).some((row) => {
      const [, local, , state] = row.trim().split(/\s+/);
      return local?.endsWith(hex) === true && state === LISTEN;
    });
  });
}

/** Waits until the proxy listens on `port`. */
async function waitListening(port: number, proc: Subprocess, output: () => string): Promise<void> {
  const deadline = Date.now() + START_MS;
  while (!listening(port)) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`proxy not listening on ${port}: ${output()}`);
    await Bun.sleep(50);
  }
}

async function start(cmd: string[], port: number, dir: string): Promise<RunningProxy> {
  const proc = Bun.spawn(cmd, { cwd: dir, stdout: "pipe", stderr: "pipe" });
  running.add(proc);
  const output = collectOutput(proc);
  const proxy = {
    dir,
    output,
    problems() {
      const log = join(dir, "error.log");
      const lines = existsSync(log) ? readFileSync(log, "utf8").split("\n") : [];
      return lines.filter((l) => /\[(warn|error|crit|alert|emerg)\]/.test(l));
    },
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
      running.delete(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitListening(port, proc, proxy.output);
  } catch (err) {
    await proxy.stop();
    throw err;
  }
  return proxy;
}

/** The README's `stream { … }` block for nginx, as written. */
export function readmeStreamBlock(): string {
  const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
  const block = /```nginx\n(stream \{[\s\S]*?)```/.exec(readme)?.[1];
  if (!block) throw new Error("README.md has no ```nginx block starting with `stream {`");
  return block;
}

/**
 * The README block with its ports changed. The listen addresses become the loopback ones too:
 * a test must not listen on every interface of the machine it runs on.
 */
export function readmeBlockFor(listenPort: number, upstreamPort: number): string {
  const swaps: [string, string][] = [
    ["listen 25;", `listen 127.0.0.1:${listenPort};`],
    ["listen [::]:25;", `listen [::1]:${listenPort};`],
    ["proxy_pass 127.0.0.1:2525;", `proxy_pass 127.0.0.1:${upstreamPort};`],
  ];
  let block = readmeStreamBlock();
  for (const [from, to] of swaps) {
    if (block.split(from).length !== 2) throw new Error(`README stream block: expected \`${from}\` once:\n${block}`);
    block = block.replace(from, to);
  }
  return block;
}

/** A whole nginx.conf around `block`: what Debian's nginx.conf adds at the top level, minus `http`. */
function nginxConf(dir: string, block: string): string {
  return [
    existsSync(STREAM_MODULE) ? `load_module ${STREAM_MODULE};` : "",
    "worker_processes 1;",
    `error_log ${join(dir, "error.log")} notice;`,
    `pid ${join(dir, "nginx.pid")};`,
    "events { worker_connections 128; }",
    block,
  ].join("\n");
}

function nginxArgs(dir: string, conf: string): string[] {
  const file = join(dir, "nginx.conf");
  writeFileSync(file, conf);
  return [NGINX ?? "nginx", "-p", dir, "-e", join(dir, "error.log"), "-c", file];
}

/** `nginx -t` of the config, as the README says to run: null when fine, else its output. */
export function nginxTest(dir: string, block: string): string | null {
  const r = Bun.spawnSync([...nginxArgs(dir, nginxConf(dir, block)), "-t"], { stdout: "pipe", stderr: "pipe" });
  return r.exitCode === 0 ? null : `${r.stdout.toString()}${r.stderr.toString()}`.trim();
}

/** Why nginx with the stream module cannot run here, or null. */
export function nginxSkipReason(): string | null {
  if (!NGINX) return "nginx not installed (apt-get install -y nginx libnginx-mod-stream)";
  const dir = mkdtempSync(join(tmpdir(), "mailgw-nginx-probe-"));
  const failed = nginxTest(dir, "stream { server { listen 127.0.0.1:37999; proxy_pass 127.0.0.1:1; proxy_protocol on; } }");
  rmSync(dir, { recursive: true, force: true });
  return failed ? `nginx cannot load a stream block (apt-get install -y libnginx-mod-stream): ${failed.split("\n")[0]}` : null;
}

/** Why nginx cannot serve an `http` block here, or null. */
export function nginxHttpSkipReason(): string | null {
  if (!NGINX) return "nginx not installed (apt-get install -y nginx)";
  const dir = mkdtempSync(join(tmpdir(), "mailgw-nginx-probe-"));
  const failed = nginxTest(dir, httpProbe(dir));
  rmSync(dir, { recursive: true, force: true });
  return failed ? `nginx cannot load an http block: ${failed.split("\n")[0]}` : null;
}

function httpProbe(dir: string): string {
  return `http { ${nginxHttpPaths(dir)} server { listen 127.0.0.1:37999; location / { return 204; } } }`;
}

/**
 * The `http` settings that point nginx's files into `dir`: Debian's build writes request bodies
 * and its access log under /var/lib/nginx and /var/log/nginx, which a test must not touch.
 */
export function nginxHttpPaths(dir: string, logFormat = ""): string {
  const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((t) => `${t}_temp_path ${join(dir, t)};`);
  return [...temp, `access_log ${join(dir, "access.log")}${logFormat ? ` ${logFormat}` : ""};`].join(" ");
}

export interface RunningNginx extends RunningProxy {
  /** Checks `block` with nginx -t, then makes the running nginx load it (SIGHUP, as `nginx -s reload`). */
  reload(block: string): void;
}

/** nginx with `block` (`{{dir}}` in it becomes nginx's temp dir) at the top level of its config. */
export async function startNginx(block: string, listenPort: number): Promise<RunningNginx> {
  const dir = mkdtempSync(join(tmpdir(), "mailgw-nginx-"));
  // Started as root, nginx runs its workers as `nobody`: they must reach the temp paths inside
  // (request bodies over client_body_buffer_size are written there), which mkdtemp's 0700 forbids.
  chmodSync(dir, 0o755);
  const withDir = (b: string) => b.replaceAll("{{dir}}", dir);
  const failed = nginxTest(dir, withDir(block));
  if (failed) throw new Error(`nginx -t failed:\n${failed}`);
  const proxy = await start([...nginxArgs(dir, nginxConf(dir, withDir(block))), "-g", "daemon off;"], listenPort, dir);
  return {
    ...proxy,
    reload(next: string) {
      const bad = nginxTest(dir, withDir(next));
      if (bad) throw new Error(`nginx -t failed:\n${bad}`);
      nginxArgs(dir, nginxConf(dir, withDir(next)));
      // The master in the foreground ("daemon off") is the process start() spawned: its pid file names it.
      process.kill(Number(readFileSync(join(dir, "nginx.pid"), "utf8").trim()), "SIGHUP");
    },
  };
}

/** Why HAProxy cannot run here, or null. */
export function haproxySkipReason(): string | null {
  if (!HAPROXY) return "haproxy not installed (apt-get install -y haproxy)";
  const r = Bun.spawnSync([HAPROXY, "-v"], { stdout: "pipe", stderr: "pipe" });
  return r.exitCode === 0 ? null : `haproxy -v failed: ${r.stderr.toString().trim()}`;
}

/** HAProxy in the foreground (`-db`) with `conf`; `{{dir}}` in it becomes its temp dir. */
export async function startHaproxy(conf: string, firstPort: number): Promise<RunningProxy> {
  const dir = mkdtempSync(join(tmpdir(), "mailgw-haproxy-"));
  const file = join(dir, "haproxy.cfg");
  writeFileSync(file, conf.replaceAll("{{dir}}", dir));
  const check = Bun.spawnSync([HAPROXY ?? "haproxy", "-c", "-f", file], { stdout: "pipe", stderr: "pipe" });
  if (check.exitCode !== 0) throw new Error(`haproxy -c failed:\n${check.stdout.toString()}${check.stderr.toString()}`);
  return start([HAPROXY ?? "haproxy", "-db", "-f", file], firstPort, dir);
}

/** `show stat` on HAProxy's stats socket (`stats socket {{dir}}/admin.sock` in its config), one object per row. */
export async function haproxyStats(proxy: RunningProxy): Promise<Record<string, string>[]> {
  const text = await new Promise<string>((resolve, reject) => {
    let out = "";
    const socket = connect(join(proxy.dir, "admin.sock"), () => socket.write("show stat\n"));
    socket.on("data", (d) => (out += d.toString()));
    socket.on("end", () => resolve(out));
    socket.on("error", reject);
  });
  const [head = "", ...rows] = text.trim().split("\n");
  const names = head.replace(/^# /, "").split(",");
  return rows.map((row) => Object.fromEntries(row.split(",").map((v, i) => [names[i] ?? String(i), v])));
}
