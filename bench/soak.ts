/**
 * soak.ts - does a long-running `mailgw serve` leak anything?
 *
 * Runs the compiled executable for --minutes under a steady, mixed, moderate load and samples
 * every 10 s: VmRSS (and its anonymous part) / VmHWM, open fds, threads, the SQLite file and its -wal, the spool's file
 * count, msg/s accepted and the queue depth. Then it stops the load, waits --settle seconds and
 * samples again: what a leak-free server holds should come back to a plateau.
 *
 * usage: node_modules/.bin/bun bench/soak.ts [--minutes 20] [--binary dist/mailgw] [--rate 40]
 *                                            [--settle 60] [--base-port 28500] [--out DIR]
 *
 * The load (all on loopback, client addresses spread over 127.x.y.z so the per-IP rate limit,
 * 200 per 10 s here, only bites the client meant to hit it, and the limiter sees tens of
 * thousands of addresses):
 *  - subjects choose the rule: archive (default), forward, webhook, reject, drop;
 *  - 4 sessions kept open (reconnecting every 500 messages) and one-message sessions;
 *  - STARTTLS sessions (nodemailer, self-signed cert);
 *  - clients that disconnect in the middle of DATA, and clients that go quiet until the
 *    server's idle timeout closes them;
 *  - a client that sends more than RATE_LIMIT_MAX per window (gets 451 4.7.1);
 *  - forwards go to a relay on loopback that pipes to Postfix's smtp-sink, except 45 s of
 *    every 4 minutes when it answers 451 (and drops the pooled connections), so retries
 *    pile up and drain; the webhook target (Bun.serve) answers 503 to 1 post in 20;
 *  - rules.yaml rewritten every minute, SIGHUP every 2 minutes, the certificate renewed
 *    (new key and cert renamed over the old ones) every 3 minutes;
 *  - /stats, /stats.json, /metrics, /healthz polled; `mailgw queue list` every minute.
 *
 * Output: a table per sample on stdout, `samples.csv`, `serve.log` and `serve.err` in the
 * output directory, then a summary
 * (first / last / max, slope per 10 min over the second half of the load, value after the
 * settle). Exit 1 when fds or threads grow steadily, RSS keeps climbing over the second half,
 * or the spool does not drain after the load; 0 otherwise.
 */
import { spawn, spawnSync, type Subprocess } from "bun";
import { mkdtempSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync, existsSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join, resolve } from "node:path";
import nodemailer from "nodemailer";
import { Client, counts, freshIp, line, message, pick } from "./lib/soak-client.ts";
import { countFiles, summarize, type Sample } from "./lib/soak-report.ts";

// ---------------------------------------------------------------- arguments
const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i];
  if (k === "-h" || k === "--help") {
    console.log(readFileSync(import.meta.path, "utf8").split("*/")[0]);
    process.exit(0);
  }
  if (!k?.startsWith("--") || process.argv[i + 1] === undefined) {
    console.error(`soak: bad argument ${k}`);
    process.exit(2);
  }
  args.set(k.slice(2), process.argv[i + 1]!);
}
const MINUTES = Number(args.get("minutes") ?? 20);
const BINARY = resolve(args.get("binary") ?? "dist/mailgw");
const RATE = Number(args.get("rate") ?? 40); // target msg/s over the kept-open + one-message sessions
const SETTLE_S = Number(args.get("settle") ?? 60);
const BASE = Number(args.get("base-port") ?? 28500);
const SMTP_PORT = BASE + 25, HTTP_PORT = BASE + 30, SINK_PORT = BASE + 27, RELAY_PORT = BASE + 28, HOOK_PORT = BASE + 29;
const RATE_LIMIT_MAX = 200, RATE_LIMIT_WINDOW_MS = 10_000;
const PEERS = process.env.BENCH_PEERS ?? "/work/shared/bench-peers";
const SAMPLE_MS = 10_000;

const work = mkdtempSync("/var/tmp/mailgw-soak-");
const out = resolve(args.get("out") ?? join(work, "out"));
spawnSync(["mkdir", "-p", out]);
const dataDir = join(work, "data");
const dbPath = join(dataDir, "mail-gateway.db");
const rulesFile = join(work, "rules.yaml");
const keyPath = join(work, "key.pem"), certPath = join(work, "cert.pem");
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const log = (s: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${s}`);

// ---------------------------------------------------------------- fixtures
let rulesVersion = 0;
function writeRules(): void {
  rulesVersion++;
  // The edit changes a real rule (a threshold) so each version is a different rule set.
  const text = `# soak rules, version ${rulesVersion}
domains: [company.com]
default: { action: archive, category: default }
rules:
  - name: spam
    priority: 1000
    category: spam
    action: reject
    conditions:
      - { field: subject, operator: starts_with, value: "[SPAM]" }
  - name: drop-noise
    priority: 900
    category: noise
    action: drop
    conditions:
      - { field: subject, operator: starts_with, value: "noise" }
  - name: to-relay
    priority: 800
    category: fwd
    action: forward
    forward_to: [inbox@example.net]
    conditions:
      - { field: subject, operator: starts_with, value: "fwd" }
  - name: to-hook
    priority: 700
    category: hook
    action: webhook
    url: http://127.0.0.1:${HOOK_PORT}/inbound
    conditions:
      - { field: subject, operator: starts_with, value: "hook" }
  - name: big-${rulesVersion % 2}
    priority: 600
    category: big
    action: archive
    conditions:
      - { field: size, operator: gt, value: ${100_000 + rulesVersion} }
`;
  // Half the edits in place (vi with backupcopy, shell redirection), half by rename (most editors).
  if (rulesVersion % 2 === 0) writeFileSync(rulesFile, text);
  else {
    writeFileSync(rulesFile + ".tmp", text);
    renameSync(rulesFile + ".tmp", rulesFile);
  }
}

let certVersion = 0;
function renewCert(): void {
  certVersion++;
  const k = join(work, "new-key.pem"), c = join(work, "new-cert.pem");
  const r = spawnSync(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
    "-keyout", k, "-out", c, "-days", "2", "-subj", `/CN=mx.soak.test/serialNumber=${certVersion}`]);
  if (r.exitCode !== 0) throw new Error(`openssl: ${r.stderr.toString()}`);
  // certbot-like: both files replaced by rename, key first.
  renameSync(k, keyPath);
  renameSync(c, certPath);
}

// ---------------------------------------------------------------- peers: sink, relay, webhook
function sinkCtl(cmd: string): string {
  const r = spawnSync([join(PEERS, "sink.sh"), cmd, String(SINK_PORT)]);
  return r.stdout.toString().trim();
}

let relayFailing = false;
const relaySockets = new Set<{ end(): void }>();
let relayRefused = 0;
// A relay on loopback: pipes to smtp-sink, or (while failing) answers 451 to MAIL FROM.
const relay = Bun.listen<{ upstream: Socket | null; buf: string; pending: Buffer[] }>({
  hostname: "127.0.0.1",
  port: RELAY_PORT,
  socket: {
    open(s) {
      relaySockets.add(s);
      s.data = { upstream: null, buf: "", pending: [] };
      if (relayFailing) {
        s.write("220 relay.soak ESMTP (failing)\r\n");
        return;
      }
      const up = connect(SINK_PORT, "127.0.0.1");
      s.data.upstream = up;
      up.on("data", (d) => s.write(d));
      up.on("close", () => s.end());
      up.on("error", () => s.end());
    },
    data(s, d) {
      if (s.data.upstream) {
        s.data.upstream.write(d);
        return;
      }
      s.data.buf += d.toString("latin1");
      let i: number;
      while ((i = s.data.buf.indexOf("\r\n")) >= 0) {
        const line = s.data.buf.slice(0, i).toUpperCase();
        s.data.buf = s.data.buf.slice(i + 2);
        if (line.startsWith("EHLO")) s.write("250-relay.soak\r\n250 PIPELINING\r\n");
        else if (line.startsWith("HELO") || line.startsWith("RSET") || line.startsWith("NOOP")) s.write("250 OK\r\n");
        else if (line.startsWith("MAIL")) { relayRefused++; s.write("451 4.3.0 try again later\r\n"); }
        else if (line.startsWith("QUIT")) { s.write("221 bye\r\n"); s.end(); }
        else s.write("503 5.5.1 bad sequence\r\n");
      }
    },
    close(s) {
      relaySockets.delete(s);
      s.data.upstream?.destroy();
    },
    error(s) { s.data.upstream?.destroy(); },
  },
});
function setRelayFailing(failing: boolean): void {
  if (failing === relayFailing) return;
  relayFailing = failing;
  // A relay restarting drops what is connected: the pool must notice and reconnect.
  for (const s of relaySockets) s.end();
  log(`relay ${failing ? "answers 451 now" : "passes to smtp-sink again"}`);
}

let hookPosts = 0, hook503 = 0;
const hook = Bun.serve({
  hostname: "127.0.0.1",
  port: HOOK_PORT,
  async fetch(req) {
    await req.arrayBuffer();
    hookPosts++;
    if (hookPosts % 20 === 0) { hook503++; return new Response("busy", { status: 503 }); }
    return new Response("ok");
  },
});

// ---------------------------------------------------------------- mailgw serve
const env = {
  ...process.env,
  SMTP_HOST: "127.0.0.1", SMTP_PORT: String(SMTP_PORT), HTTP_HOST: "127.0.0.1", HTTP_PORT: String(HTTP_PORT),
  DATA_DIR: dataDir, DATABASE_URL: `file:${dbPath}`, SMTP_HOSTNAME: "mx.soak.test", RULES_FILE: rulesFile,
  SMTP_TLS_KEY: keyPath, SMTP_TLS_CERT: certPath,
  RELAY_SMTP_HOST: "127.0.0.1", RELAY_SMTP_PORT: String(RELAY_PORT), RELAY_SMTP_SECURE: "none",
  RATE_LIMIT_MAX: String(RATE_LIMIT_MAX), RATE_LIMIT_WINDOW_MS: String(RATE_LIMIT_WINDOW_MS),
  QUEUE_RETRY_BASE_SECONDS: "2", LOG_FORMAT: "json", LOG_LEVEL: "warn",
};
let server = null as Subprocess | null;
let serverDied = false;

// ---------------------------------------------------------------- load generators
let running = true;
const idleClients = new Set<Client>();

async function keptOpen(n: number, perS: number): Promise<void> {
  while (running) {
    try {
      const c = await Client.open(SMTP_PORT, `127.1.0.${n + 1}`);
      await c.cmd("EHLO kept.soak.example");
      for (let i = 0; i < 500 && running; i++) {
        const t = Date.now();
        const { subject, size } = pick();
        await c.send(subject, size);
        await sleep(Math.max(0, 1000 / perS - (Date.now() - t)));
      }
      await c.cmd("QUIT").catch(() => {});
      c.destroy();
    } catch { counts.errors++; await sleep(500); }
  }
}

async function oneShot(perS: number): Promise<void> {
  while (running) {
    const t = Date.now();
    try {
      const c = await Client.open(SMTP_PORT, freshIp());
      await c.cmd("EHLO one.soak.example");
      const { subject, size } = pick();
      await c.send(subject, size);
      await c.cmd("QUIT").catch(() => {});
      c.destroy();
    } catch { counts.errors++; }
    await sleep(Math.max(0, 1000 / perS - (Date.now() - t)));
  }
}

async function tlsSessions(perS: number): Promise<void> {
  while (running) {
    const t = Date.now();
    const tr = nodemailer.createTransport({
      host: "127.0.0.1", port: SMTP_PORT, secure: false, requireTLS: true, localAddress: freshIp(),
      tls: { rejectUnauthorized: false }, name: "tls.soak.example",
    } as never);
    try {
      const { subject, size } = pick();
      await tr.sendMail({ from: "tls@soak.example", to: "user@company.com", subject, text: line.repeat(size / line.length) });
      counts.tls++; counts.accepted++;
    } catch (e) {
      const msg = String((e as Error).message);
      if (msg.includes("550")) counts.rejected++;
      else counts.errors++;
    }
    tr.close();
    await sleep(Math.max(0, 1000 / perS - (Date.now() - t)));
  }
}

/** Disconnect in the middle of DATA, every `everyMs`. */
async function midData(everyMs: number): Promise<void> {
  while (running) {
    try {
      const c = await Client.open(SMTP_PORT, freshIp());
      await c.cmd("EHLO abort.soak.example");
      await c.cmd("MAIL FROM:<a@soak.example>");
      await c.cmd("RCPT TO:<user@company.com>");
      await c.cmd("DATA");
      c.write(message("hello", 30_000).slice(0, 15_000));
      await sleep(50);
      c.destroy();
      counts.midData++;
    } catch { counts.errors++; }
    await sleep(everyMs);
  }
}

/** Clients that say EHLO (or start DATA) and then go quiet; the server's idle timeout ends them. */
async function idlers(everyMs: number): Promise<void> {
  let n = 0;
  while (running) {
    try {
      const c = await Client.open(SMTP_PORT, freshIp());
      await c.cmd("EHLO idle.soak.example");
      if (n++ % 2 === 0) {
        await c.cmd("MAIL FROM:<i@soak.example>");
        await c.cmd("RCPT TO:<user@company.com>");
        await c.cmd("DATA");
        c.write("Subject: idle\r\n\r\npartial");
      }
      idleClients.add(c);
      counts.idle++;
      c.reply().catch(() => {}).finally(() => idleClients.delete(c));
    } catch { counts.errors++; }
    await sleep(everyMs);
  }
}

/** One address that sends RATE_LIMIT_MAX + 50 messages as fast as it can once a minute (451s for the last ones). */
async function overLimit(): Promise<void> {
  while (running) {
    const t = Date.now();
    try {
      const c = await Client.open(SMTP_PORT, "127.3.0.1");
      await c.cmd("EHLO greedy.soak.example");
      for (let i = 0; i < RATE_LIMIT_MAX + 50 && running; i++) {
        await c.send("hello", 2000);
      }
      await c.cmd("QUIT").catch(() => {});
      c.destroy();
    } catch { counts.errors++; }
    await sleep(Math.max(0, 60_000 - (Date.now() - t)));
  }
}

async function poller(): Promise<void> {
  const paths = ["/stats", "/stats.json", "/metrics", "/healthz"];
  let i = 0;
  while (running) {
    await fetch(`http://127.0.0.1:${HTTP_PORT}${paths[i++ % paths.length]}`).then((r) => r.arrayBuffer()).catch(() => counts.errors++);
    await sleep(1500);
  }
}

let queueListFailures = 0;
/** Not spawnSync: the load must not pause while the CLI opens the database. */
async function queueList(): Promise<void> {
  const p = spawn([BINARY, "queue", "list"], { env, stdout: "ignore", stderr: "pipe" });
  const code = await p.exited;
  if (code !== 0) { queueListFailures++; log(`queue list exit ${code}: ${(await new Response(p.stderr).text()).trim().slice(0, 200)}`); }
}

// ---------------------------------------------------------------- sampling
const samples: Sample[] = [];
let lastAccepted = 0, lastT = 0;
const sizeMB = (p: string) => (existsSync(p) ? statSync(p).size / 1048576 : 0);
async function sample(phase: string, t0: number): Promise<void> {
  const pid = server!.pid;
  if (!existsSync(`/proc/${pid}/status`)) return;
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  let queue = -1, deferred = -1;
  try {
    const j = (await (await fetch(`http://127.0.0.1:${HTTP_PORT}/stats.json`)).json()) as { queue: { depth: Record<string, number> } };
    const d = j.queue.depth;
    queue = (d.queued ?? 0) + (d.deferred ?? 0) + (d.delivering ?? 0) + (d.held ?? 0);
    deferred = d.deferred ?? 0;
  } catch { /* shown as -1 */ }
  const now = Date.now();
  const s: Sample = {
    t: Math.round((now - t0) / 1000), phase,
    rssMB: kb("VmRSS") / 1024, anonMB: kb("RssAnon") / 1024, hwmMB: kb("VmHWM") / 1024,
    fds: readdirSync(`/proc/${pid}/fd`).length, threads: readdirSync(`/proc/${pid}/task`).length,
    dbMB: sizeMB(dbPath), walMB: sizeMB(dbPath + "-wal"), spool: countFiles(join(dataDir, "spool")),
    msgS: lastT ? (counts.accepted - lastAccepted) / ((now - lastT) / 1000) : 0, queue, deferred,
  };
  lastAccepted = counts.accepted; lastT = now;
  samples.push(s);
  const f = (x: number, d = 1) => x.toFixed(d).padStart(7);
  if (samples.length % 20 === 1) console.log("      t phase   rss_MB anon_MB  hwm_MB    fds threads  db_MB  wal_MB  spool   msg/s  queue  deferr");
  console.log(`${String(s.t).padStart(7)} ${phase.padEnd(6)} ${f(s.rssMB)} ${f(s.anonMB)} ${f(s.hwmMB)} ${f(s.fds, 0)} ${f(s.threads, 0)} ${f(s.dbMB)} ${f(s.walMB)} ${f(s.spool, 0)} ${f(s.msgS)} ${f(queue, 0)} ${f(deferred, 0)}`);
}

// ---------------------------------------------------------------- run
async function main(): Promise<number> {
  writeRules();
  renewCert();
  if (!sinkCtl("pid")) log(sinkCtl("start"));
  server = spawn([BINARY, "serve"], { env, cwd: work, stdout: Bun.file(join(out, "serve.log")), stderr: Bun.file(join(out, "serve.err")) });
  void server.exited.then((code) => {
    if (running) {
      log(`mailgw serve DIED during the load: exit ${code}, signal ${server?.signalCode ?? "none"}; see ${out}/serve.err`);
      serverDied = true;
    }
  });
  for (let i = 0; i < 100; i++) {
    if (await fetch(`http://127.0.0.1:${HTTP_PORT}/healthz`).then((r) => r.ok).catch(() => false)) break;
    await sleep(100);
  }
  log(`mailgw ${BINARY} pid ${server.pid}, work dir ${work}, ${MINUTES} min of load at ~${RATE} msg/s + extras`);
  const t0 = Date.now();
  const loadMs = MINUTES * 60_000;
  await sample("start", t0);

  const perKept = (RATE * 0.7) / 4;
  const tasks = [
    ...[0, 1, 2, 3].map((n) => keptOpen(n, perKept)),
    oneShot((RATE * 0.3) / 2), oneShot((RATE * 0.3) / 2),
    tlsSessions(1.5), midData(2000), idlers(4000), overLimit(), poller(),
  ];
  let tick = 0;
  const periodic = setInterval(() => {
    tick++; // every 10 s
    const el = (Date.now() - t0) / 1000;
    setRelayFailing(el % 240 >= 150 && el % 240 < 195);
    if (tick % 6 === 0) { writeRules(); void queueList(); }
    if (tick % 12 === 0) { server!.kill("SIGHUP"); }
    if (tick % 18 === 9) { renewCert(); log(`certificate renewed (#${certVersion})`); }
  }, SAMPLE_MS);
  while (Date.now() - t0 < loadMs && !serverDied) {
    await sleep(SAMPLE_MS - ((Date.now() - t0) % SAMPLE_MS));
    await sample("load", t0);
  }
  running = false;
  clearInterval(periodic);
  setRelayFailing(false);
  for (const c of idleClients) c.destroy();
  await Promise.race([Promise.all(tasks), sleep(15_000)]);
  log(`load stopped: ${JSON.stringify(counts)} relay 451s ${relayRefused}, webhook posts ${hookPosts} (503: ${hook503}), queue list failures ${queueListFailures}`);
  if (serverDied) return 1;
  const loadEnd = samples.length;
  const tEnd = Date.now();
  while (Date.now() - tEnd < SETTLE_S * 1000) {
    await sleep(SAMPLE_MS);
    await sample("settle", t0);
  }
  return report(loadEnd);
}

function report(loadEnd: number): number {
  const problems = summarize(samples, loadEnd, samples.at(-1)!, out, queueListFailures);
  log(problems.length ? `LEAK? ${problems.join("; ")}` : "no steady growth found");
  log(`samples: ${join(out, "samples.csv")}, server log: ${join(out, "serve.log")}`);
  return problems.length ? 1 : 0;
}

let code = 1;
try {
  code = await main();
} catch (e) {
  console.error(`soak: ${(e as Error).stack}`);
} finally {
  running = false;
  if (server && !serverDied) { server.kill("SIGTERM"); await server.exited; }
  relay.stop(true);
  hook.stop(true);
  log(`sink: ${sinkCtl("stop")}`);
  if (!args.has("out") || code !== 0) log(`work dir kept: ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
process.exit(code);
