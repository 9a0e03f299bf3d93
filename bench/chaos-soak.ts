/**
 * chaos-soak.ts - is "nothing that got 250 is ever lost" true under faults, and do the counters
 * tell the truth?
 *
 * Drives the compiled `mailgw serve` with a steady mix (archive, forward to a relay, forward +
 * archive, webhook, drop, reject; 1 KB–2 MB, a 10 MB one now and then) from nodemailer, while
 * injecting faults at random moments: kill -9 of serve and restart (at a random moment, just
 * after the relay or the webhook stored a message, and in the middle of a 10 MB DATA), the relay
 * refusing connections, answering 421 / 451 / 535, or hanging; the webhook answering 500 / 429
 * or hanging; SIGHUP; rules.yaml rewritten (valid, and invalid for a few seconds);
 * `mailgw queue retry --all`. Every 250 (id from "Queued as") is recorded. Then the faults stop,
 * the queue drains, and bench/lib/chaos-check.ts reconciles clients, archive, relay and
 * webhook logs, spool, database, /stats.json and /metrics.
 *
 * usage: node_modules/.bin/bun bench/chaos-soak.ts [--minutes 12] [--binary dist/mailgw]
 *                                                  [--rate 8] [--base-port 28400] [--seed N]
 * Exit 0 when every check holds, 1 otherwise; the work dir (logs, data dir) is kept.
 */
import { spawn, type Subprocess } from "bun";
import { closeSync, mkdtempSync, openSync, renameSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join, resolve } from "node:path";
import nodemailer from "nodemailer";
import { Hook, Relay, type HookMode, type RelayMode } from "./lib/chaos-peers.ts";
import { reconcile, type Sent } from "./lib/chaos-check.ts";

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ""), process.argv[i + 1] ?? "");
const MINUTES = Number(args.get("minutes") ?? 12);
const BINARY = resolve(args.get("binary") ?? "dist/mailgw");
const RATE = Number(args.get("rate") ?? 8);
const BASE = Number(args.get("base-port") ?? 28400);
const SMTP_PORT = BASE + 25, HTTP_PORT = BASE + 30, RELAY_PORT = BASE + 28, BACKEND_PORT = BASE + 27, HOOK_PORT = BASE + 29;

const work = mkdtempSync("/var/tmp/mailgw-chaos-");
const dataDir = join(work, "data");
const rulesFile = join(work, "rules.yaml");
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const t0 = Date.now();
const log = (s: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(5)}s] ${s}`);
const rand = (a: number, b: number) => a + Math.random() * (b - a);

// ---------------------------------------------------------------- rules
let rulesVersion = 0;
function writeRules(valid = true): void {
  rulesVersion++;
  const text = valid ? `# chaos rules, version ${rulesVersion}
domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: spam, priority: 1000, category: spam, action: reject, conditions: [{ field: subject, operator: starts_with, value: "[SPAM]" }] }
  - { name: drop-noise, priority: 900, category: noise, action: drop, conditions: [{ field: subject, operator: starts_with, value: "noise" }] }
  - name: fwd-archive
    priority: 850
    category: fwdarch
    action: forward
    archive: true
    forward_to: [copy@example.net]
    conditions: [{ field: subject, operator: starts_with, value: "fwdarch" }]
  - name: to-relay
    priority: 800
    category: fwd
    action: forward
    forward_to: [inbox@example.net, other@example.org]
    conditions: [{ field: subject, operator: starts_with, value: "fwd" }]
  - name: to-hook
    priority: 700
    category: hook
    action: webhook
    url: http://127.0.0.1:${HOOK_PORT}/inbound?token=t${rulesVersion}
    conditions: [{ field: subject, operator: starts_with, value: "hook" }]
  - { name: big-${rulesVersion % 3}, priority: 600, category: big, action: archive, conditions: [{ field: subject, operator: starts_with, value: "big" }, { field: size, operator: gt, value: ${1000 + rulesVersion} }] }
` : `# broken on purpose (version ${rulesVersion})
domains: [company.com
rules:
  - name: Bad Name
    action: explode
`;
  if (rulesVersion % 2 === 0) writeFileSync(rulesFile, text);
  else { writeFileSync(rulesFile + ".tmp", text); renameSync(rulesFile + ".tmp", rulesFile); }
}
let rulesBroken = false;

// ---------------------------------------------------------------- serve
const env: Record<string, string> = {
  PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: work,
  SMTP_HOST: "127.0.0.1", SMTP_PORT: String(SMTP_PORT), HTTP_HOST: "127.0.0.1", HTTP_PORT: String(HTTP_PORT),
  DATA_DIR: dataDir, SMTP_HOSTNAME: "mx.chaos.test", RULES_FILE: rulesFile,
  RELAY_SMTP_HOST: "127.0.0.1", RELAY_SMTP_PORT: String(RELAY_PORT), RELAY_SMTP_SECURE: "none",
  RELAY_SMTP_USER: "gw", RELAY_SMTP_PASS: "secret",
  RATE_LIMIT_MAX: "100000", QUEUE_RETRY_BASE_SECONDS: "2", QUEUE_MAX_AGE_HOURS: args.get("max-age-hours") ?? "0.01", LOG_FORMAT: "json", LOG_LEVEL: "info",
};
let serve: Subprocess | null = null;
let restarting = false;
const stats = { kills: 0, killsCrashLoop: 0, sigterm: 0, sigtermBad: 0, killsRandom: 0, killsRelay: 0, killsHook: 0, killsBigData: 0, restarts: 0, startFailures: 0,
  sighup: 0, rulesValid: 0, rulesInvalid: 0, retryAll: 0, relayFaults: {} as Record<string, number>, hookFaults: {} as Record<string, number> };
const rss: Array<{ t: number; pid: number; rssMB: number }> = [];

async function startServe(): Promise<void> {
  if (rulesBroken) { writeRules(true); rulesBroken = false; }
  for (;;) {
    const fd = openSync(join(work, "serve.log"), "a");
    const p = spawn([BINARY, "serve"], { env, cwd: work, stdout: fd, stderr: fd });
    closeSync(fd);
    for (let i = 0; i < 200; i++) {
      if (p.exitCode !== null) break;
      if (await fetch(`http://127.0.0.1:${HTTP_PORT}/healthz`).then((r) => r.ok).catch(() => false)) { serve = p; return; }
      await sleep(50);
    }
    stats.startFailures++;
    log(`serve did not come up (exit ${p.exitCode}); see ${work}/serve.log`);
    p.kill("SIGKILL");
    await p.exited;
    await sleep(1000);
  }
}

/** A graceful stop (systemctl restart): must exit 0, within the 10 s grace and a margin. */
async function sigtermRestart(): Promise<void> {
  if (!serve || restarting) return;
  restarting = true;
  const p = serve;
  serve = null;
  const t = Date.now();
  p.kill("SIGTERM");
  const code = await Promise.race([p.exited, sleep(30_000).then(() => "timeout")]);
  stats.sigterm++;
  log(`SIGTERM: exit ${code} after ${Date.now() - t} ms`);
  if (code !== 0) { stats.sigtermBad++; if (code === "timeout") { p.kill("SIGKILL"); await p.exited; } }
  await startServe();
  stats.restarts++;
  restarting = false;
}

/** Crash loop: killed again while it recovers, 0-1.5 s after it answered /healthz. */
async function crashLoop(): Promise<void> {
  if (!serve || restarting) return;
  restarting = true;
  for (let i = 0; i < 3; i++) {
    const p = serve!;
    p.kill("SIGKILL");
    await p.exited;
    stats.kills++; stats.killsCrashLoop++;
    serve = null;
    await startServe();
    await sleep(rand(0, 1500));
  }
  log("crash loop: 3 kills right after start");
  restarting = false;
}

async function kill9(why: string): Promise<void> {
  if (!serve || restarting) return;
  restarting = true;
  const p = serve;
  serve = null;
  p.kill("SIGKILL");
  await p.exited;
  stats.kills++;
  log(`kill -9 serve (${why})`);
  await sleep(rand(300, 3000));
  await startServe();
  stats.restarts++;
  restarting = false;
}

// ---------------------------------------------------------------- peers
const relay = new Relay(RELAY_PORT, BACKEND_PORT, join(work, "relay.jsonl"));
const hook = new Hook(HOOK_PORT, join(work, "hook.jsonl"));

// ---------------------------------------------------------------- load
const sent: Sent[] = [];
const client = { attempts: 0, accepted: 0, rejected: 0, tempfail: 0, errors: 0, bigAborted: 0 };
let running = true;
let tokenSeq = 0;
const LINE = "The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuvwxyz\n";
function pickKind(): { subject: string; kind: Sent["kind"] } {
  const x = Math.random();
  if (x < 0.3) return { subject: "hello there", kind: "archive" };
  if (x < 0.5) return { subject: "fwd report", kind: "forward" };
  if (x < 0.58) return { subject: "fwdarch copy", kind: "fwdarch" };
  if (x < 0.78) return { subject: "hook order", kind: "webhook" };
  if (x < 0.88) return { subject: "noise ping", kind: "drop" };
  return { subject: "[SPAM] buy now", kind: "reject" };
}
function pickSize(): number {
  const x = Math.random();
  if (x < 0.75) return 1000 + Math.floor(Math.random() * 20_000);
  if (x < 0.95) return 20_000 + Math.floor(Math.random() * 300_000);
  return 300_000 + Math.floor(Math.random() * 1_700_000);
}

async function sendOne(subject: string, kind: Sent["kind"], size: number): Promise<void> {
  const token = `t${++tokenSeq}`;
  const tr = nodemailer.createTransport({ host: "127.0.0.1", port: SMTP_PORT, secure: false, ignoreTLS: true,
    connectionTimeout: 10_000, greetingTimeout: 10_000, socketTimeout: 60_000 } as never);
  client.attempts++;
  try {
    const info = await tr.sendMail({ from: "sender@chaos.example", to: "user@company.com", subject: `${subject} ${token}`,
      headers: { "X-Soak-Token": token }, text: LINE.repeat(Math.max(1, Math.floor(size / LINE.length))) });
    const id = /Queued as ([0-9a-z]+)/.exec(info.response)?.[1];
    if (!id) { client.errors++; log(`250 without an id? ${info.response}`); return; }
    client.accepted++;
    sent.push({ id, token, kind, size, at: Date.now() });
  } catch (e) {
    const code = (e as { responseCode?: number }).responseCode;
    if (code === 550) { client.rejected++; if (kind !== "reject") log(`unexpected 550 for ${kind}: ${(e as Error).message}`); }
    else if (code && code >= 400 && code < 500) client.tempfail++;
    else client.errors++;
  } finally { tr.close(); }
}

async function sender(perS: number): Promise<void> {
  while (running) {
    const t = Date.now();
    const { subject, kind } = pickKind();
    await sendOne(subject, kind, pickSize());
    await sleep(Math.max(0, 1000 / perS - (Date.now() - t)));
  }
}

/** A 10 MB message now and then (archive, forward or webhook), sent whole. */
async function bigSender(): Promise<void> {
  while (running) {
    await sleep(rand(30_000, 60_000));
    if (!running) break;
    const x = Math.random();
    if (x < 0.33) await sendOne("fwd big", "forward", 10_000_000);
    else if (x < 0.66) await sendOne("hook big", "webhook", 10_000_000);
    else await sendOne("big one", "archive", 10_000_000);
  }
}

/** Raw-socket 10 MB DATA; serve is killed when about 40% has been sent. The client gets no 250. */
async function killDuringBigData(): Promise<void> {
  const s = connect(SMTP_PORT, "127.0.0.1");
  let buf = "";
  s.on("data", (d) => { buf += d.toString(); });
  s.on("error", () => {});
  const waitFor = async (re: RegExp) => { for (let i = 0; i < 100 && !re.test(buf); i++) await sleep(50); };
  await waitFor(/^220 /m);
  s.write("EHLO big.chaos.example\r\nMAIL FROM:<b@chaos.example>\r\nRCPT TO:<user@company.com>\r\nDATA\r\n");
  await waitFor(/^354 /m);
  const chunk = LINE.replace(/\n/g, "\r\n").repeat(800); // ~68 KB
  s.write(`Subject: big one cut\r\nX-Soak-Token: cut${++tokenSeq}\r\n\r\n`);
  for (let sentBytes = 0; sentBytes < 4_000_000 && !s.destroyed; sentBytes += chunk.length) {
    if (!s.write(chunk)) await new Promise((r) => s.once("drain", r));
  }
  client.bigAborted++;
  stats.killsBigData++;
  await kill9("during a 10 MB DATA");
  if (/Queued as/.test(buf)) log(`BUG? the cut 10 MB message got a 250: ${buf}`);
  s.destroy();
}

// ---------------------------------------------------------------- faults
async function queueRetryAll(): Promise<void> {
  const p = spawn([BINARY, "queue", "retry", "--all"], { env, cwd: work, stdout: "pipe", stderr: "pipe" });
  const code = await p.exited;
  stats.retryAll++;
  if (code !== 0) log(`queue retry --all exit ${code}: ${(await new Response(p.stderr).text()).trim().slice(0, 300)}`);
}

async function relayFault(mode: RelayMode): Promise<void> {
  stats.relayFaults[mode] = (stats.relayFaults[mode] ?? 0) + 1;
  relay.set(mode);
  log(`relay: ${mode}`);
  await sleep(rand(5000, 30_000));
  relay.set("ok");
  log("relay: ok again");
}
async function hookFault(mode: HookMode): Promise<void> {
  stats.hookFaults[mode] = (stats.hookFaults[mode] ?? 0) + 1;
  hook.set(mode);
  log(`webhook: ${mode}`);
  await sleep(rand(5000, 30_000));
  hook.set("ok");
  log("webhook: ok again");
}

const FAULTS: Array<[number, () => Promise<void> | void]> = [
  [3, () => { stats.killsRandom++; return kill9("random moment"); }],
  [2, () => { relay.killNext = () => { stats.killsRelay++; void kill9("relay just stored a message"); }; }],
  [2, () => { hook.killNext = () => { stats.killsHook++; void kill9("webhook just stored a post"); }; }],
  [1, () => killDuringBigData()],
  [1, () => relayFault("down")], [1, () => relayFault("421")], [1, () => relayFault("451")],
  [1.5, () => relayFault("535")], [1, () => relayFault("hang")], [1.5, () => relayFault("hang-data")],
  [1, () => sigtermRestart()], [1, () => crashLoop()],
  [1, () => hookFault("500")], [1, () => hookFault("429")], [1, () => hookFault("hang")],
  [2, () => { if (serve) { serve.kill("SIGHUP"); stats.sighup++; log("SIGHUP"); } }],
  [2, () => { if (!rulesBroken) { writeRules(true); stats.rulesValid++; } }],
  [1, async () => {
    if (rulesBroken) return;
    rulesBroken = true; writeRules(false); stats.rulesInvalid++; log("rules.yaml broken");
    await sleep(rand(2000, 8000));
    if (rulesBroken) { writeRules(true); rulesBroken = false; log("rules.yaml fixed"); }
  }],
  [2, () => queueRetryAll()],
];
async function chaos(): Promise<void> {
  const total = FAULTS.reduce((a, [w]) => a + w, 0);
  const inFlight: Promise<void>[] = [];
  while (running) {
    await sleep(rand(4000, 12_000));
    if (!running) break;
    let x = Math.random() * total;
    const f = FAULTS.find(([w]) => (x -= w) < 0)![1];
    inFlight.push(Promise.resolve(f()).catch((e) => log(`fault error: ${(e as Error).message}`)));
  }
  await Promise.all(inFlight);
}

async function sampler(): Promise<void> {
  while (running || restarting) {
    const pid = serve?.pid;
    if (pid) {
      const st = await Bun.file(`/proc/${pid}/status`).text().catch(() => "");
      const kb = Number(/VmRSS:\s+(\d+)/.exec(st)?.[1] ?? 0);
      if (kb) rss.push({ t: Math.round((Date.now() - t0) / 1000), pid, rssMB: Math.round(kb / 1024) });
    }
    await sleep(5000);
  }
}

// ---------------------------------------------------------------- run
async function main(): Promise<number> {
  writeRules(true);
  await startServe();
  log(`serve ${BINARY} up, work dir ${work}; ${MINUTES} min of chaos at ~${RATE} msg/s`);
  const load = [sender(RATE / 3), sender(RATE / 3), sender(RATE / 3), bigSender()];
  const sam = sampler();
  const faults = chaos();
  await sleep(MINUTES * 60_000);
  running = false;
  log("load and faults stopping");
  await Promise.all([...load, faults]);
  relay.killNext = null; hook.killNext = null;
  relay.set("ok"); hook.set("ok");
  while (restarting) await sleep(200);
  if (rulesBroken) { writeRules(true); rulesBroken = false; }
  log(`load stopped: ${JSON.stringify(client)}; faults ${JSON.stringify(stats)}`);
  // Drain: what a mail admin does after an incident: retry everything once, then wait.
  await queueRetryAll();
  const drained = await waitDrained(8 * 60_000);
  await sam;
  const problems = await reconcile({ work, dataDir, httpPort: HTTP_PORT, sent, client, relay, hook, rss, stats, drained, binary: BINARY, env });
  log(problems.length ? `PROBLEMS:\n  - ${problems.join("\n  - ")}` : "every check held");
  log(`work dir kept: ${work}`);
  return problems.length ? 1 : 0;
}

async function waitDrained(ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  let last = "";
  while (Date.now() < end) {
    const j = await fetch(`http://127.0.0.1:${HTTP_PORT}/stats.json`).then((r) => r.json() as Promise<{ queue: { depth: Record<string, number> } }>).catch(() => null);
    const d = j?.queue.depth ?? {};
    const pending = (d.queued ?? 0) + (d.deferred ?? 0) + (d.delivering ?? 0) + (d.held ?? 0);
    const now = JSON.stringify(d);
    if (now !== last) { log(`queue depth ${now}`); last = now; }
    if (j && pending === 0) return true;
    await sleep(2000);
  }
  return false;
}

let code = 1;
try { code = await main(); } catch (e) { console.error(`chaos-soak: ${(e as Error).stack}`); }
finally {
  running = false;
  const last = serve as Subprocess | null;
  if (last) { last.kill("SIGTERM"); await last.exited; }
  relay.stop(); hook.stop();
}
process.exit(code);
