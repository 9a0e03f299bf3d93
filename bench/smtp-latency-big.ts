/**
 * Latency of small messages while one huge message is received and parsed: starts
 * `mailgw serve` (source, or dist/mailgw with --binary) on a loopback port with a fresh data
 * dir, keeps S sessions sending 4 KB messages one after the other, and reports p50/p99/max of
 * the time from the end of DATA to the 250 — first alone, then while another connection sends
 * a 25 MB plain-text message (and the gateway parses, spools and archives it). Also reports
 * the server's RSS before and its peak during the big message.
 *
 * Usage: bun bench/smtp-latency-big.ts [--port 2525] [--sessions 10] [--seconds 4]
 *          [--big-mb 25] [--body-rule] [--binary]
 *   --body-rule  rules read `body` (full MIME parse of every message) instead of subject only
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "2525" },
    sessions: { type: "string", default: "10" },
    seconds: { type: "string", default: "4" },
    "big-mb": { type: "string", default: "25" },
    "body-rule": { type: "boolean", default: false },
    binary: { type: "boolean", default: false },
  },
});
const REPO = resolve(import.meta.dir, "..");
const PORT = Number(values.port);

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

function rssMb(pid: number): number {
  const status = require("node:fs").readFileSync(`/proc/${pid}/status`, "utf8") as string;
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

function pct(list: number[], p: number): string {
  const s = [...list].sort((a, b) => a - b);
  return (s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? 0).toFixed(1);
}

async function phase(clients: Client[], seconds: number, small: Uint8Array, during?: Promise<unknown>): Promise<number[]> {
  const latencies: number[] = [];
  const end = performance.now() + seconds * 1000;
  let stop = false;
  void during?.finally(() => (stop = true));
  await Promise.all(
    clients.map(async (c) => {
      while (during ? !stop : performance.now() < end) latencies.push(await c.send(small));
    }),
  );
  return latencies;
}

const dir = await mkdtemp(join(tmpdir(), "mailgw-latency-"));
const rules = values["body-rule"]
  ? `domains: [company.com]\ndefault: { action: archive, category: default }\nrules:\n  - { name: body, action: drop, category: b, conditions: [{ field: body, operator: contains, value: "unsubscribe-xyz" }] }\n`
  : `domains: [company.com]\ndefault: { action: archive, category: default }\nrules:\n  - { name: spam, action: reject, category: spam, conditions: [{ field: subject, operator: regex, value: '^\\[SPAM\\]' }] }\n`;
await writeFile(join(dir, "rules.yaml"), rules);
const cmd = values.binary ? [join(REPO, "dist/mailgw"), "serve"] : [process.execPath, join(REPO, "src/main.ts"), "serve"];
const server = Bun.spawn(cmd, {
  cwd: dir,
  env: { ...process.env, SMTP_HOST: "127.0.0.1", SMTP_PORT: String(PORT), HTTP_HOST: "127.0.0.1", HTTP_PORT: "0", SMTP_HOSTNAME: "mx.bench",
    RATE_LIMIT_MAX: "1000000000", LOG_FORMAT: "json", LOG_LEVEL: "warn", MAX_MESSAGE_SIZE_MB: "30" },
  stdout: "ignore", stderr: "inherit",
});
try {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((r) => connect(PORT, "127.0.0.1").on("connect", function (this: Socket) { this.destroy(); r(true); }).on("error", () => r(false)));
    if (ok) break;
    await Bun.sleep(100);
  }
  const small = message(4096, "small");
  const big = message(Number(values["big-mb"]) * 1024 * 1024, "big");
  const clients = await Promise.all(Array.from({ length: Number(values.sessions) }, () => Client.open()));
  await phase(clients, 1, small); // warm-up
  const rssBefore = rssMb(server.pid);
  const alone = await phase(clients, Number(values.seconds), small);
  let peak = rssBefore;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMb(server.pid))), 20);
  const bigClient = await Client.open();
  const t0 = performance.now();
  const bigDone = bigClient.send(big).then((ms) => ({ ms, total: performance.now() - t0 }));
  const during = await phase(clients, 0, small, bigDone);
  const bigResult = await bigDone;
  clearInterval(sampler);
  const line = (name: string, l: number[]) => `${name.padEnd(28)} n=${String(l.length).padStart(5)}  p50 ${pct(l, 0.5)} ms  p99 ${pct(l, 0.99)} ms  max ${pct(l, 1)} ms`;
  console.log(`mailgw ${values.binary ? "dist/mailgw" : "source"}, rules: ${values["body-rule"] ? "body rule (full parse)" : "subject only (header parse)"}, ${values.sessions} sessions`);
  console.log(line("4 KB alone", alone));
  console.log(line(`4 KB during ${values["big-mb"]} MB`, during));
  console.log(`${values["big-mb"]} MB message: sent+accepted in ${bigResult.total.toFixed(0)} ms (end of DATA → 250: ${bigResult.ms.toFixed(0)} ms); server RSS ${rssBefore.toFixed(0)} MB before, peak ${peak.toFixed(0)} MB (growth ${(peak - rssBefore).toFixed(0)} MB)`);
  for (const c of [...clients, bigClient]) c.close();
} finally {
  server.kill("SIGTERM");
  await server.exited;
  await rm(dir, { recursive: true, force: true });
}
