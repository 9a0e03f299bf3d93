/**
 * year-of-data.ts - builds a DATA_DIR as a year of a small company's mail leaves it, to measure
 * `mailgw serve` (start-up, /stats, retention, queue list) against data at scale.
 *
 * usage: node_modules/.bin/bun bench/year-of-data.ts --dir DIR [--messages 1500000] [--days 400]
 *          [--archive-days 365] [--failed 5000] [--wal-mb 0] [--schema-version latest]
 *
 * Rows go through src/store (openDatabase's real migrations, insertMessage, insertDelivery),
 * in transactions of 20,000 messages, received_at spread evenly over --days ending now:
 *  - actions: 20% reject, 22% archive, 35% forward (1 in 10 also archived), 13% webhook,
 *    10% drop; 8 rules and 5 categories;
 *  - every archived message of the last --archive-days has its file in archive/YYYY-MM-DD/
 *    (a 1 KB message); older archived rows have a path but no file, as a copy removed by hand;
 *  - every forward/webhook has a delivery with one attempt (delivered), except --failed of
 *    them spread over the whole period: failed after 5 attempts, spool file kept (as serve does);
 *  - daily_counters for every day (received, action, sessions, delivery results and durations).
 * --wal-mb N: then a child process rewrites rows with checkpoints off until the -wal file holds
 *   N MB and is killed with SIGKILL, leaving that WAL behind (a serve killed while a reader held
 *   a snapshot).
 * --schema-version N: the schema stops at migration N (to time the later ones at serve's start);
 *   duration counters are then left to migration 6.
 */
import { Database } from "bun:sqlite";
import { mkdirSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { newMessageId } from "../src/spool/ids.ts";
import { bumpCounter } from "../src/store/counters.ts";
import { dayKey, openDatabase } from "../src/store/db.ts";
import { durationIncrements } from "../src/store/delivery-durations.ts";
import { MIGRATIONS } from "../src/store/migrations.ts";
import { insertDelivery, insertMessage, type MessageRow } from "../src/store/messages.ts";
import type { Action } from "../src/types.ts";

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ""), process.argv[i + 1] ?? "");
if (process.argv[2] === "--wal-child") {
  walChild(process.argv[3]!, Number(process.argv[4]));
  process.exit(0);
}
const DIR = resolve(args.get("dir") ?? "");
if (!args.get("dir")) throw new Error("--dir DIR is required");
const MESSAGES = Number(args.get("messages") ?? 1_500_000);
const DAYS = Number(args.get("days") ?? 400);
const ARCHIVE_DAYS = Number(args.get("archive-days") ?? 365);
const FAILED = Number(args.get("failed") ?? 5000);
const WAL_MB = Number(args.get("wal-mb") ?? 0);
const SCHEMA = Number(args.get("schema-version") ?? MIGRATIONS.at(-1)!.version);
const DAY_MS = 86_400_000;
const RULES = ["invoices", "newsletters", "support", "sales", "hr", "alerts", "spam-subject", "blocklist"];
const CATEGORIES = ["finance", "bulk", "support", "sales", "spam"];
const BODY = `From: a@example.org\r\nTo: b@example.com\r\nSubject: test\r\n\r\n${"x".repeat(72)}\r\n`.repeat(10);

mkdirSync(join(DIR, "spool"), { recursive: true });
mkdirSync(join(DIR, "archive"), { recursive: true });
const dbPath = join(DIR, "mail-gateway.db");
const db = SCHEMA >= MIGRATIONS.at(-1)!.version ? openDatabase(dbPath) : openAtVersion(dbPath, SCHEMA);
db.exec("PRAGMA synchronous = OFF");

const now = Date.now();
const start = now - DAYS * DAY_MS;
const archiveFrom = now - ARCHIVE_DAYS * DAY_MS;
// Odd, so the failed ones are not all of one kind.
const failedEvery = FAILED > 0 ? Math.floor(MESSAGES * 0.48 / FAILED) | 1 : Infinity;
const t0 = performance.now();
let deliveriesSeen = 0;
let failedMade = 0;
let files = 0;
const knownDays = new Set<string>();
const counters = new Map<string, { at: number; metric: string; rule: string; category: string; n: number }>();
const count = (at: number, metric: string, rule: string, category: string, n = 1): void => {
  const key = `${dayKey(at)} ${metric} ${rule} ${category}`;
  const c = counters.get(key);
  if (c) c.n += n;
  else counters.set(key, { at, metric, rule, category, n });
};
const attemptStmt = db.query(
  `INSERT INTO delivery_attempts (delivery_id, at, target, duration_ms, ok, reply) VALUES (?, ?, ?, ?, ?, ?)`,
);
const finishStmt = db.query(
  `UPDATE deliveries SET state = ?, attempts = ?, updated_at = ?, next_attempt_at = ?, last_error = ?, delivered_at = ? WHERE id = ?`,
);

const BATCH = 20_000;
for (let base = 0; base < MESSAGES; base += BATCH) {
  db.transaction(() => {
    for (let i = base; i < Math.min(MESSAGES, base + BATCH); i++) makeMessage(i);
  })();
  if (base % 200_000 === 0) console.error(`${base} messages, ${files} files, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}
db.transaction(() => {
  for (const c of counters.values()) bumpCounter(db, c.at, c.metric as never, { rule: c.rule, category: c.category }, c.n);
})();
db.close();
if (WAL_MB > 0) {
  const child = Bun.spawnSync([process.execPath, import.meta.path, "--wal-child", dbPath, String(WAL_MB)], { stderr: "inherit" });
  console.error(`wal child exited ${child.exitCode} (signal ${child.signalCode})`);
}
const size = (f: string): number => { try { return statSync(f).size; } catch { return 0; } };
console.log(JSON.stringify({
  dir: DIR, messages: MESSAGES, deliveries: deliveriesSeen, failed: failedMade, archiveFiles: files, dayDirs: knownDays.size,
  counterRows: counters.size, dbBytes: size(dbPath), walBytes: size(`${dbPath}-wal`), seconds: Math.round((performance.now() - t0) / 1000),
}));

function makeMessage(i: number): void {
  const at = Math.floor(start + (i / MESSAGES) * DAYS * DAY_MS);
  const id = newMessageId(at);
  const r = (i * 2654435761) % 100;
  const action: Action = r < 20 ? "reject" : r < 42 ? "archive" : r < 77 ? "forward" : r < 90 ? "webhook" : "drop";
  const rule = i % 9 === 0 ? null : RULES[i % RULES.length]!;
  // A rule has one category, as in rules.yaml.
  const category = rule === null ? "default" : CATEGORIES[(i % RULES.length) % CATEGORIES.length]!;
  const archived = action === "archive" || (action === "forward" && i % 10 === 0);
  let archivePath: string | null = null;
  if (archived) {
    const day = dayKey(at);
    archivePath = join("archive", day, `${id}.eml`);
    if (at >= archiveFrom) {
      if (!knownDays.has(day)) mkdirSync(join(DIR, "archive", day), { recursive: true });
      knownDays.add(day);
      writeFileSync(join(DIR, archivePath), BODY);
      files++;
    }
  }
  const row: MessageRow = {
    id, receivedAt: at, clientIp: `192.0.2.${i % 250}`, helo: "mx.example.org", tls: i % 3 !== 0,
    mailFrom: `sender${i % 5000}@example.org`, recipients: [`user${i % 40}@example.com`], subject: `Message number ${i} about something`,
    size: BODY.length, rule, category, action, archive: archived, status: "done", spoolCrc: 0, commitSeq: null, archivePath,
  };
  insertMessage(db, row);
  count(at, "received", rule ?? "", category);
  count(at, `action:${action}`, rule ?? "", category);
  count(at, "session", "", "");
  if (i % 3 !== 0) count(at, "session_tls", "", "");
  if (action !== "forward" && action !== "webhook") return;
  const kind = action;
  const target = kind === "forward" ? ["it@corp.example"] : "https://hooks.example.com/mail";
  insertDelivery(db, { messageId: id, kind, target, rule, category, state: "queued", createdAt: at });
  const did = Number(db.query<{ id: number }, []>("SELECT last_insert_rowid() AS id").get()!.id);
  deliveriesSeen++;
  const fail = deliveriesSeen % failedEvery === 0 && failedMade < FAILED;
  const attempts = fail ? 5 : 1;
  for (let a = 0; a < attempts; a++) {
    const aAt = at + 200 + a * 600_000;
    const ms = fail ? 30_000 : 80 + (i % 400);
    attemptStmt.run(did, aAt, String(target), ms, fail ? 0 : 1, fail ? "550 5.1.1 <it@corp.example>: Recipient address rejected: User unknown in virtual mailbox table" : "250 2.0.0 Ok: queued as ABC");
    if (SCHEMA >= 6) for (const inc of durationIncrements(aAt, kind, ms)) count(aAt, inc.metric, "", "", inc.n ?? 1);
  }
  const endAt = at + 200 + (attempts - 1) * 600_000;
  if (fail) {
    failedMade++;
    finishStmt.run("failed", attempts, endAt, endAt, "550 5.1.1 <it@corp.example>: Recipient address rejected: User unknown in virtual mailbox table", null, did);
    writeFileSync(join(DIR, "spool", `${id}.eml`), BODY);
    count(endAt, `failed:${kind}`, rule ?? "", category);
  } else {
    finishStmt.run("delivered", 1, endAt, endAt, null, endAt, did);
    count(endAt, `delivered:${kind}`, rule ?? "", category);
  }
}

/** Migrations up to `version` only, as an older mailgw left the file. */
function openAtVersion(path: string, version: number): Database {
  const d = new Database(path, { create: true, readwrite: true, strict: true });
  d.exec("PRAGMA journal_mode = WAL");
  for (const m of MIGRATIONS) {
    if (m.version > version) break;
    d.transaction(() => {
      d.exec(m.sql);
      d.exec(`PRAGMA user_version = ${m.version}`);
    })();
  }
  return d;
}

/** Rewrites rows with checkpoints off until the WAL holds `mb` MB, then dies by SIGKILL. */
function walChild(path: string, mb: number): void {
  const d = new Database(path, { readwrite: true, strict: true });
  d.exec("PRAGMA wal_autocheckpoint = 0");
  d.exec("PRAGMA journal_size_limit = -1");
  const limit = mb * 1024 * 1024;
  const walSize = (): number => statSync(`${path}-wal`, { throwIfNoEntry: false })?.size ?? 0;
  const rows = Number(d.query<{ n: number }, []>("SELECT count(*) AS n FROM messages").get()!.n);
  for (let offset = 0; walSize() < limit; offset = (offset + 20_000) % Math.max(rows, 1)) {
    d.query("UPDATE messages SET client_ip = client_ip || ' ' WHERE rowid IN (SELECT rowid FROM messages LIMIT 20000 OFFSET ?)").run(offset);
  }
  process.kill(process.pid, "SIGKILL");
}
