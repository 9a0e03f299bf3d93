/**
 * A real Prometheus (and promtool) for the /metrics interop test: Prometheus runs in the
 * foreground with its own config and TSDB in a temp dir, listens on a loopback port in
 * 39000–39499 only, and is stopped by its own pid (never by name: a system Prometheus may run
 * on the machine). Queries go through its HTTP API, as Grafana's would.
 *
 * A missing prometheus or promtool is a skip reason (printed by the caller), never a silent pass.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { findTool } from "../packaging/binary.ts";
import { collectOutput } from "./process-output.ts";

export const PROMETHEUS = findTool("prometheus");
export const PROMTOOL = findTool("promtool");
const PORT_FIRST = 23000;
const PORT_COUNT = 500;
const READY_MS = 20_000;

/** Why Prometheus cannot run here, or null. */
export function prometheusSkipReason(): string | null {
  if (!PROMETHEUS || !PROMTOOL) return "prometheus/promtool not installed (apt-get install -y --no-install-recommends prometheus)";
  const r = Bun.spawnSync([PROMETHEUS, "--version"], { stdout: "pipe", stderr: "pipe" });
  return r.exitCode === 0 ? null : `prometheus --version failed: ${r.stderr.toString().trim()}`;
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen({ port, host: "127.0.0.1", exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** `n` different ports in 23000–23499 that were free on 127.0.0.1 a moment ago (see freePortsIn in interop.ts for the ranges). */
export async function pickPorts(n: number): Promise<number[]> {
  const start = Math.floor(Math.random() * PORT_COUNT);
  const ports: number[] = [];
  for (let i = 0; i < PORT_COUNT && ports.length < n; i++) {
    const port = PORT_FIRST + ((start + i) % PORT_COUNT);
    if (await canListen(port)) ports.push(port);
  }
  if (ports.length < n) throw new Error(`not ${n} free ports in ${PORT_FIRST}-${PORT_FIRST + PORT_COUNT - 1}`);
  return ports;
}

/** `promtool check metrics` on an exposition: its exit code and what it printed (lint findings). */
export function promtoolCheckMetrics(exposition: string): { exitCode: number; output: string } {
  const r = Bun.spawnSync([PROMTOOL ?? "promtool", "check", "metrics"], { stdin: Buffer.from(exposition), stdout: "pipe", stderr: "pipe" });
  return { exitCode: r.exitCode, output: `${r.stdout.toString()}${r.stderr.toString()}`.trim() };
}

/** `promtool check config` on a prometheus.yml: null when valid, else its output. */
export function promtoolCheckConfig(file: string): string | null {
  const r = Bun.spawnSync([PROMTOOL ?? "promtool", "check", "config", file], { stdout: "pipe", stderr: "pipe" });
  return r.exitCode === 0 ? null : `${r.stdout.toString()}${r.stderr.toString()}`.trim();
}

export interface Target {
  labels: Record<string, string>;
  scrapeUrl: string;
  health: "up" | "down" | "unknown";
  lastError: string;
  lastScrape: string;
}

export interface VectorSample {
  metric: Record<string, string>;
  value: number;
}

export interface RunningPrometheus {
  url: string;
  dir: string;
  output(): string;
  targets(): Promise<Target[]>;
  /** An instant query (`time` in unix seconds, default now) as numbers; throws on a query error. */
  query(expr: string, time?: number): Promise<VectorSample[]>;
  stop(): Promise<void>;
}

const running = new Set<Subprocess>();
// A test run that dies between start and stop must not leave a Prometheus behind.
process.on("exit", () => {
  for (const p of running) p.kill("SIGKILL");
});

/** Prometheus with `config` (`{{dir}}` becomes its temp dir) on 127.0.0.1:`port`, once /-/ready answers. */
export async function startPrometheus(config: string, port: number, files: Record<string, string> = {}): Promise<RunningPrometheus> {
  const dir = mkdtempSync(join(tmpdir(), "mailgw-prometheus-"));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content, { mode: 0o600 });
  const file = join(dir, "prometheus.yml");
  writeFileSync(file, config.replaceAll("{{dir}}", dir));
  const invalid = promtoolCheckConfig(file);
  if (invalid) throw new Error(`promtool check config failed:\n${invalid}`);
  const proc = Bun.spawn(
    [PROMETHEUS ?? "prometheus", `--config.file=${file}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`, "--log.level=warn"],
    { cwd: dir, stdout: "pipe", stderr: "pipe" },
  );
  running.add(proc);
  const output = collectOutput(proc);
  const url = `http://127.0.0.1:${port}`;
  const api = async <T>(path: string): Promise<T> => {
    const body = (await (await fetch(`${url}${path}`)).json()) as { status: string; data: T; error?: string };
    if (body.status !== "success") throw new Error(`Prometheus ${path}: ${body.error ?? body.status}`);
    return body.data;
  };
  const prom: RunningPrometheus = {
    url,
    dir,
    output,
    targets: async () => (await api<{ activeTargets: Target[] }>("/api/v1/targets?state=active")).activeTargets,
    async query(expr, time) {
      const at = time === undefined ? "" : `&time=${time}`;
      const data = await api<{ resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] }>(
        `/api/v1/query?query=${encodeURIComponent(expr)}${at}`,
      );
      if (data.resultType !== "vector") throw new Error(`${expr}: a ${data.resultType}, not a vector`);
      return data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
    },
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
      running.delete(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  const deadline = Date.now() + READY_MS;
  while ((await fetch(`${url}/-/ready`).then((r) => r.status, () => 0)) !== 200) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      await prom.stop();
      throw new Error(`Prometheus not ready on ${url}: ${output()}`);
    }
    await Bun.sleep(100);
  }
  return prom;
}
