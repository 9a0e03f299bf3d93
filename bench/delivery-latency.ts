/**
 * Ingress latency while every message is also delivered: starts `mailgw serve` (source; --repo
 * another checkout for a before/after comparison) with a rule forwarding every message to a
 * Postfix smtp-sink on loopback (RELAY_SMTP_SECURE=none), keeps S sessions sending 4 KB
 * messages one after the other, and reports p50/p99/max of end of DATA → 250, the accepted
 * rate, and the server's CPU per message (all threads; /proc/<pid>/stat). Shows whether the
 * delivery side (in-thread or its own thread, a second SQLite connection) stalls intake.
 *
 * Usage: bun bench/delivery-latency.ts [--port 25391] [--sink-port 27831] [--sessions 10]
 *          [--seconds 5] [--repo PATH]
 * Needs /work/shared/bench-peers/sink.sh (BENCH_PEERS) for the sink.
 */
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { Client, message, pct, waitForPort } from "./lib/smtp-client.ts";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "25391" },
    "sink-port": { type: "string", default: "27831" },
    sessions: { type: "string", default: "10" },
    seconds: { type: "string", default: "5" },
    repo: { type: "string", default: resolve(import.meta.dir, "..") },
  },
});
const REPO = resolve(values.repo);
const PORT = Number(values.port);
const SINK_PORT = Number(values["sink-port"]);
const PEERS = process.env.BENCH_PEERS ?? "/work/shared/bench-peers";
/** Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux). */
const TICKS_PER_S = 100;

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_S;
}

async function phase(clients: Client[], seconds: number, small: Uint8Array): Promise<number[]> {
  const latencies: number[] = [];
  const end = performance.now() + seconds * 1000;
  await Promise.all(
    clients.map(async (c) => {
      while (performance.now() < end) latencies.push(await c.send(small));
    }),
  );
  return latencies;
}

const sinkStarted = Bun.spawnSync([join(PEERS, "sink.sh"), "start", String(SINK_PORT)]).exitCode === 0;
const dir = await mkdtemp(join(tmpdir(), "mailgw-dlatency-"));
await writeFile(join(dir, "rules.yaml"),
  "domains: [company.com]\ndefault: { action: archive, category: default }\nrules:\n  - { name: fwd, action: forward, category: bench, forward_to: [sink@example.net], conditions: [{ field: size, operator: gt, value: 0 }] }\n");
const server = Bun.spawn([process.execPath, join(REPO, "src/main.ts"), "serve"], {
  cwd: dir,
  env: { ...process.env, SMTP_HOST: "127.0.0.1", SMTP_PORT: String(PORT), HTTP_HOST: "127.0.0.1", HTTP_PORT: "0", SMTP_HOSTNAME: "mx.bench",
    RATE_LIMIT_MAX: "1000000000", LOG_FORMAT: "json", LOG_LEVEL: "warn",
    RELAY_SMTP_HOST: "127.0.0.1", RELAY_SMTP_PORT: String(SINK_PORT), RELAY_SMTP_SECURE: "none" },
  stdout: "ignore", stderr: "inherit",
});
try {
  await waitForPort(PORT);
  const small = message(4096, "small");
  const clients = await Promise.all(Array.from({ length: Number(values.sessions) }, () => Client.open(PORT)));
  await phase(clients, 1, small); // warm-up
  const cpu0 = cpuSeconds(server.pid);
  const t0 = performance.now();
  const l = await phase(clients, Number(values.seconds), small);
  const wall = (performance.now() - t0) / 1000;
  await Bun.sleep(1500); // let delivery drain, so its CPU is counted
  const cpu = cpuSeconds(server.pid) - cpu0;
  console.log(`${REPO} ${values.sessions} sessions: n=${l.length} ${(l.length / wall).toFixed(0)} msg/s accepted  p50 ${pct(l, 0.5)} ms  p99 ${pct(l, 0.99)} ms  max ${pct(l, 1)} ms  server CPU ${((cpu / l.length) * 1e6).toFixed(0)} µs/msg`);
  for (const c of clients) c.close();
} finally {
  server.kill("SIGTERM");
  await server.exited;
  await rm(dir, { recursive: true, force: true });
  if (sinkStarted) Bun.spawnSync([join(PEERS, "sink.sh"), "stop", String(SINK_PORT)]);
}
