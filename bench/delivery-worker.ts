/**
 * Delivery-side throughput: N queued 4 KB forwards in a fresh data dir, one worker, a relay
 * (Postfix smtp-sink on loopback: /work/shared/bench-peers/sink.sh start PORT). Prints
 * delivered msg/s, the relay sessions the sink counted (connection reuse), and CPU time per
 * delivered message of this process (process.cpuUsage: worker + SQLite + nodemailer) and of the
 * sink (/proc/<pid>/stat utime+stime; --sink-pid, or found from sink.sh's state dir). CPU per
 * message is the figure to compare on a shared 2-core machine, where wall-clock rates are noisy.
 *
 *   bun bench/delivery-worker.ts --port 2727 [--messages 5000] [--size 4096] [--runs 3]
 *
 * Not a test: numbers go to docs/benchmarks.md. Loopback only.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadConfig } from "../src/config/config.ts";
import { silentLogger } from "../src/log/logger.ts";
import { createDeliveryWorker } from "../src/queue/worker.ts";
import { newMessageId } from "../src/spool/ids.ts";
import { openDatabase } from "../src/store/db.ts";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "2727" },
    messages: { type: "string", default: "5000" },
    size: { type: "string", default: "4096" },
    runs: { type: "string", default: "3" },
    "sink-file": { type: "string" },
    "sink-pid": { type: "string" },
  },
});
const port = Number(values.port);
const total = Number(values.messages);
const size = Number(values.size);
const sinkFile = values["sink-file"] ?? `/tmp/smtp-bench-sink/${port}/out`;

const sinkPidFile = `/tmp/smtp-bench-sink/${port}/sink.pid`;
function sinkPid(): number | null {
  if (values["sink-pid"]) return Number(values["sink-pid"]);
  try {
    return Number(readFileSync(sinkPidFile, "utf8").trim());
  } catch {
    return null;
  }
}

/** utime+stime of a process in microseconds (clock ticks assumed 100/s, as on Linux x86/arm). */
function processCpuMicros(pid: number | null): number {
  if (pid === null) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10_000;
  } catch {
    return 0;
  }
}

function sinkCounters(): { sess: number; mesg: number } {
  try {
    const text = readFileSync(sinkFile, "latin1").slice(-256);
    const all = [...text.matchAll(/sess=(\d+) quit=\d+ mesg=(\d+)/g)].at(-1);
    return { sess: Number(all?.[1] ?? 0), mesg: Number(all?.[2] ?? 0) };
  } catch {
    return { sess: 0, mesg: 0 };
  }
}

function message(i: number): string {
  const head = `From: bench@example.org\r\nTo: sink@example.net\r\nSubject: bench ${i}\r\nMessage-ID: <${i}@bench>\r\n\r\n`;
  const line = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n";
  return head + line.repeat(Math.max(1, Math.ceil((size - head.length) / line.length)));
}

interface RunResult {
  rate: number;
  sessions: number;
  delivered: number;
  /** CPU µs per delivered message: this process (user+system) and the sink. */
  selfCpuUs: number;
  sinkCpuUs: number;
}

async function run(): Promise<RunResult> {
  const dir = mkdtempSync(join(tmpdir(), "mailgw-bench-delivery-"));
  const dataDir = join(dir, "data");
  mkdirSync(join(dataDir, "spool"), { recursive: true });
  const env = {
    DATA_DIR: dataDir, DATABASE_URL: `file:${join(dataDir, "db.sqlite")}`, RULES_FILE: join(dir, "rules.yaml"),
    RELAY_SMTP_HOST: "127.0.0.1", RELAY_SMTP_PORT: String(port), RELAY_SMTP_SECURE: "none", SMTP_HOSTNAME: "bench.test",
  };
  const config = loadConfig({ env, cwd: dir, isTty: false });
  const db = openDatabase(config.databasePath);
  if (process.env.BENCH_SYNC_OFF) db.exec("PRAGMA synchronous = OFF");
  const now = Date.now();
  db.transaction(() => {
    for (let i = 0; i < total; i++) {
      const id = newMessageId(now);
      const bytes = Buffer.from(message(i));
      writeFileSync(join(dataDir, "spool", `${id}.eml`), bytes);
      db.query(`INSERT INTO messages (id, received_at, client_ip, helo, tls, mail_from, recipients, subject, size, rule, category, action, archive, status)
                VALUES (?, ?, '127.0.0.1', 'bench', 0, 'bench@example.org', '["sink@example.net"]', 'bench', ?, 'r', 'c', 'forward', 0, 'done')`).run(id, now, bytes.length);
      db.query(`INSERT INTO deliveries (message_id, kind, target, rule, category, state, attempts, created_at, next_attempt_at, updated_at)
                VALUES (?, 'forward', '["sink@example.net"]', 'r', 'c', 'queued', 0, ?, ?, ?)`).run(id, now, now, now);
    }
  })();
  const before = sinkCounters();
  const worker = createDeliveryWorker({ config, db, logger: silentLogger });
  const start = performance.now();
  const cpuBefore = process.cpuUsage();
  const sinkBefore = processCpuMicros(sinkPid());
  worker.start();
  // One index seek per poll (deliveries_due), so the bench's own polling costs next to no CPU.
  const pending = db.query<{ n: number }, []>(`SELECT 1 AS n FROM deliveries WHERE state IN ('queued', 'deferred', 'delivering') LIMIT 1`);
  while (pending.get() !== null) await Bun.sleep(20);
  const seconds = (performance.now() - start) / 1000;
  const delivered = db.query<{ n: number }, []>(`SELECT count(*) AS n FROM deliveries WHERE state = 'delivered'`).get()?.n ?? 0;
  if (delivered !== total) {
    const states = db.query<{ state: string; n: number; err: string | null }, []>(`SELECT state, count(*) AS n, max(last_error) AS err FROM deliveries GROUP BY state`).all();
    console.error(`only ${delivered} of ${total} delivered: ${JSON.stringify(states)}`);
  }
  const cpu = process.cpuUsage(cpuBefore);
  const sinkCpu = processCpuMicros(sinkPid()) - sinkBefore;
  await worker.stop();
  await Bun.sleep(300);
  const after = sinkCounters();
  db.close();
  rmSync(dir, { recursive: true, force: true });
  return {
    rate: total / seconds,
    sessions: after.sess - before.sess,
    delivered: after.mesg - before.mesg,
    selfCpuUs: (cpu.user + cpu.system) / total,
    sinkCpuUs: sinkCpu / total,
  };
}

const results = [];
for (let r = 0; r < Number(values.runs); r++) {
  const res = await run();
  results.push(res);
  console.log(
    `run ${r + 1}: ${res.rate.toFixed(0)} msg/s delivered, sink counted ${res.delivered} messages over ${res.sessions} sessions;` +
      ` CPU/msg: mailgw ${res.selfCpuUs.toFixed(0)} µs, sink ${res.sinkCpuUs.toFixed(0)} µs`,
  );
}
const median = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
console.log(
  `median: ${median(results.map((r) => r.rate)).toFixed(0)} msg/s (${total} × ${size} B);` +
    ` CPU/msg: mailgw ${median(results.map((r) => r.selfCpuUs)).toFixed(0)} µs, sink ${median(results.map((r) => r.sinkCpuUs)).toFixed(0)} µs`,
);
