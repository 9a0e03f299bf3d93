/**
 * http-at-scale.ts - how long /stats, /stats.json, /metrics and /healthz take, and how long they
 * block SMTP, on a database as a year of a busy gateway leaves it (hundreds of rules, long
 * relay errors, thousands of failed deliveries).
 *
 * usage: node_modules/.bin/bun bench/http-at-scale.ts [--dir DIR] [--messages 400000]
 *          [--days 400] [--rules 300] [--failed 5000] [--burst 30]
 *
 * Serve (from source) is started once on DIR to create the schema, stopped, the rows are written
 * straight into its database with bun:sqlite, and serve is started again. While each endpoint is
 * requested, a raw SMTP client sends NOOP every 5 ms: its worst reply delay is how long the event
 * loop (which runs SMTP too) was blocked.
 */
import { Database } from "bun:sqlite";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { RawClient } from "../test/smtp/helpers.ts";
import { serveDir, startServe } from "../test/smtp/serve-process.ts";
import { dayKey } from "../src/store/db.ts";

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ""), process.argv[i + 1] ?? "");
const MESSAGES = Number(args.get("messages") ?? 400_000);
const DAYS = Number(args.get("days") ?? 400);
const RULES = Number(args.get("rules") ?? 300);
const FAILED = Number(args.get("failed") ?? 5000);
const BURST = Number(args.get("burst") ?? 30);
const DAY_MS = 86_400_000;

const dir = args.get("dir") ?? serveDir();
const dbPath = join(dir, "data", "mail-gateway.db");
const ruleNames = Array.from({ length: RULES }, (_, i) => `rule-${String(i).padStart(3, "0")}-${"x".repeat(20)}`);
writeFileSync(join(dir, "rules.yaml"), rulesYaml());

if (!existsSync(dbPath)) {
  const first = await startServe("source", dir, {}, 60_000);
  await first.stop();
  fill();
}
const serve = await startServe("source", dir, {}, 120_000);
console.log(JSON.stringify({ dir, db: dbPath }));
try {
  for (const path of ["/healthz", "/stats", "/stats.json", "/metrics"]) {
    for (let run = 0; run < 3; run++) {
      const r = await measure(() => [fetch(serve.httpUrl + path).then((x) => x.text())]);
      console.log(JSON.stringify({ path, run, ...r }));
    }
  }
  for (const path of ["/stats", "/metrics"]) {
    const r = await measure(() => Array.from({ length: BURST }, () => fetch(serve.httpUrl + path).then((x) => x.text())));
    console.log(JSON.stringify({ path, burst: BURST, ...r }));
  }
} finally {
  await serve.stop();
}

async function measure(requests: () => Promise<string>[]): Promise<{ wallMs: number; bytes: number; worstNoopMs: number; series?: number }> {
  const c = await RawClient.connect(serve.smtpPort);
  await c.reply();
  await c.cmd("EHLO bench.example");
  let stop = false;
  let worst = 0;
  const pinger = (async () => {
    while (!stop) {
      const t = performance.now();
      await c.cmd("NOOP", 60_000);
      worst = Math.max(worst, performance.now() - t);
      await Bun.sleep(5);
    }
  })();
  await Bun.sleep(50);
  const t0 = performance.now();
  const bodies = await Promise.all(requests());
  const wallMs = performance.now() - t0;
  await Bun.sleep(30);
  stop = true;
  await pinger;
  c.end();
  const body = bodies[0] ?? "";
  const series = body.startsWith("# HELP") ? body.split("\n").filter((l) => l && !l.startsWith("#")).length : undefined;
  return { wallMs: Math.round(wallMs), bytes: Buffer.byteLength(body), worstNoopMs: Math.round(worst), ...(series === undefined ? {} : { series }) };
}

function rulesYaml(): string {
  const lines = ["domains: [company.com]", "default: { action: archive, category: default }", "rules:"];
  ruleNames.forEach((name, i) => {
    lines.push(`  - name: ${name}`, `    priority: ${i + 1}`, `    category: cat-${i % 40}`, `    action: archive`,
      `    conditions:`, `      - { field: subject, operator: contains, value: "tag-${i}" }`);
  });
  return `${lines.join("\n")}\n`;
}

function fill(): void {
  const t0 = performance.now();
  const db = new Database(dbPath, { readwrite: true, strict: true });
  db.exec("PRAGMA synchronous = OFF");
  const now = Date.now();
  const start = now - DAYS * DAY_MS;
  const longError = `550 5.1.1 <it@corp.example>: Recipient address rejected: ${"User unknown in virtual mailbox table; ".repeat(60)}`;
  const msg = db.query(`INSERT INTO messages (id, received_at, client_ip, helo, tls, mail_from, recipients, subject, size, rule, category, action, archive, status)
    VALUES (?, ?, '192.0.2.1', 'mx.example.org', 1, ?, '["u@company.com"]', ?, 1200, ?, ?, ?, 0, 'done')`);
  const del = db.query(`INSERT INTO deliveries (message_id, kind, target, rule, category, state, attempts, created_at, next_attempt_at, updated_at, last_error, delivered_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  const failedEvery = Math.max(1, Math.floor(MESSAGES / 2 / FAILED));
  db.transaction(() => {
    for (let i = 0; i < MESSAGES; i++) {
      const at = Math.floor(start + (i / MESSAGES) * DAYS * DAY_MS);
      const id = `m${i.toString(36).padStart(10, "0")}`;
      const r = i % RULES;
      const action = i % 2 === 0 ? "forward" : "archive";
      msg.run(id, at, `sender${i % 5000}@example.org`, `Message ${i} ${"about something ".repeat(5)}`, ruleNames[r]!, `cat-${r % 40}`, action);
      if (action !== "forward") continue;
      const failed = (i / 2) % failedEvery === 0;
      del.run(id, i % 4 === 0 ? "forward" : "webhook", i % 4 === 0 ? '["it@corp.example"]' : "https://user:pw@hooks.example.com/mail?key=1",
        ruleNames[r]!, `cat-${r % 40}`, failed ? "failed" : "delivered", failed ? 8 : 1, at, at, at + 1000, failed ? longError : null, failed ? null : at + 1000);
    }
  })();
  // Counters: per day, per rule (one category each), the metrics a rule's traffic bumps, plus globals.
  const ctr = db.query(`INSERT INTO daily_counters (day, metric, rule, category, n) VALUES (?, ?, ?, ?, ?)`);
  let counterRows = 0;
  db.transaction(() => {
    for (let d = 0; d <= DAYS; d++) {
      const day = dayKey(start + d * DAY_MS);
      for (const m of ["session", "session_tls", "duration:forward:0.25", "duration:forward:1", "duration_ms:forward", "duration:webhook:0.1", "duration_ms:webhook"]) {
        ctr.run(day, m, "", "", 1000 + d);
        counterRows++;
      }
      for (let r = 0; r < RULES; r++) {
        for (const m of ["received", "action:forward", "delivered:forward", "deferred:forward", "failed:forward", "delivered:webhook"]) {
          ctr.run(day, m, ruleNames[r]!, `cat-${r % 40}`, 1 + ((d + r) % 7));
          counterRows++;
        }
      }
    }
  })();
  db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  db.close();
  console.error(JSON.stringify({ filled: { messages: MESSAGES, counterRows, seconds: Math.round((performance.now() - t0) / 1000) } }));
}
