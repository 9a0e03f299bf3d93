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
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";

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

/** Minimal SMTP client: one reply at a time (multi-line replies joined). */
class Client {
  private buffer = "";
  private waiters: ((line: string) => void)[] = [];
  private constructor(private readonly socket: Socket) {
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      this.buffer += chunk;
      for (let i = this.buffer.indexOf("\r\n"); i >= 0; i = this.buffer.indexOf("\r\n")) {
        const line = this.buffer.slice(0, i);
        this.buffer = this.buffer.slice(i + 2);
        if (/^\d{3} /.test(line)) this.waiters.shift()?.(line);
      }
    });
  }
  static async open(): Promise<Client> {
    const socket = connect(PORT, "127.0.0.1");
    socket.setNoDelay(true);
    const client = new Client(socket);
    await client.reply();
    await client.command("EHLO bench.example");
    return client;
  }
  reply(): Promise<string> {
    return new Promise((resolveReply) => this.waiters.push(resolveReply));
  }
  async command(line: string | Uint8Array): Promise<string> {
    const r = this.reply();
    this.socket.write(typeof line === "string" ? `${line}\r\n` : line);
    return r;
  }
  /** Sends one message; resolves with ms from the end of DATA to the final reply. */
  async send(body: Uint8Array): Promise<number> {
    await this.command("MAIL FROM:<bench@sender.org>");
    await this.command("RCPT TO:<inbox@company.com>");
    await this.command("DATA");
    const r = this.reply();
    this.socket.write(body);
    const t0 = performance.now();
    this.socket.write("\r\n.\r\n");
    const line = await r;
    if (!line.startsWith("250")) throw new Error(`not accepted: ${line}`);
    return performance.now() - t0;
  }
  close(): void {
    this.socket.end("QUIT\r\n");
  }
}

function message(bytes: number, subject: string): Uint8Array {
  const head = `From: Bench <bench@sender.org>\r\nTo: inbox@company.com\r\nSubject: ${subject}\r\nContent-Type: text/plain\r\n\r\n`;
  const line = "The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuv\r\n";
  return new TextEncoder().encode(head + line.repeat(Math.ceil((bytes - head.length) / line.length)));
}

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_S;
}

function pct(list: number[], p: number): string {
  const s = [...list].sort((a, b) => a - b);
  return (s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? 0).toFixed(1);
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
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((r) => connect(PORT, "127.0.0.1").on("connect", function (this: Socket) { this.destroy(); r(true); }).on("error", () => r(false)));
    if (ok) break;
    await Bun.sleep(100);
  }
  const small = message(4096, "small");
  const clients = await Promise.all(Array.from({ length: Number(values.sessions) }, () => Client.open()));
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
