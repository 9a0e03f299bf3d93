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
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { Client, message, pct, waitForPort } from "./lib/smtp-client.ts";

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

function rssMb(pid: number): number {
  const status = require("node:fs").readFileSync(`/proc/${pid}/status`, "utf8") as string;
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
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
  await waitForPort(PORT);
  const small = message(4096, "small");
  const big = message(Number(values["big-mb"]) * 1024 * 1024, "big");
  const clients = await Promise.all(Array.from({ length: Number(values.sessions) }, () => Client.open(PORT)));
  await phase(clients, 1, small); // warm-up
  const rssBefore = rssMb(server.pid);
  const alone = await phase(clients, Number(values.seconds), small);
  let peak = rssBefore;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMb(server.pid))), 20);
  const bigClient = await Client.open(PORT);
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
