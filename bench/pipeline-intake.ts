/**
 * Pipeline intake benchmark: receive() calls per second (parse → classify → spool fsync →
 * SQLite commit → resolve, then the archive copy in the background) for 4 KB and 100 KB
 * messages with N concurrent callers, without SMTP in front. Shows what the storage side
 * can sustain, so SMTP-level results (bench with smtp-source) can be read against it.
 *
 * Usage: bun bench/pipeline-intake.ts [--seconds S] [--callers 1,20,100] [--sizes 4096,102400]
 *        [--dir DIR]  (DIR: where the data dir goes; default a mkdtemp under the cwd, so the
 *        numbers are those of the real disk, not of a tmpfs /tmp)
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { loadConfig } from "../src/config/config.ts";
import { silentLogger } from "../src/log/logger.ts";
import { createPipeline } from "../src/pipeline.ts";
import { startRulesRuntime } from "../src/rules-runtime/runtime.ts";
import { openDatabase } from "../src/store/db.ts";
import type { Envelope } from "../src/types.ts";

const RULES = `domains: [example.com]
default: { action: archive, category: default }
rules:
  - name: spam
    priority: 10
    action: reject
    category: spam
    conditions: [{ field: subject, operator: regex, value: '^\\[SPAM\\]' }]
  - name: sales
    priority: 5
    action: forward
    category: sales
    forward_to: sales@partner.org
    conditions: [{ field: subject, operator: contains, value: quote }]
`;

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "3" },
    callers: { type: "string", default: "1,20,100" },
    sizes: { type: "string", default: "4096,102400" },
    dir: { type: "string", default: "." },
  },
});

function makeMessage(size: number, n: number): Uint8Array {
  const head =
    `Received: from client.example ([192.0.2.9]) by gw.example.com with ESMTP id x; Mon, 1 Jan 2024 00:00:00 +0000\r\n` +
    `From: Bench <bench@sender.org>\r\nTo: inbox@example.com\r\nSubject: benchmark message ${n}\r\n` +
    `Message-ID: <${n}@sender.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n`;
  const line = "The quick brown fox jumps over the lazy dog 0123456789.\r\n";
  return new TextEncoder().encode(head + line.repeat(Math.max(1, Math.ceil((size - head.length) / line.length))));
}

const envelope: Envelope = { mailFrom: "bench@sender.org", rcptTo: ["inbox@example.com"], clientIp: "192.0.2.9", helo: "client.example", tls: false };

async function run(size: number, callers: number, seconds: number): Promise<void> {
  const dir = await mkdtemp(join(resolve(values.dir), ".bench-pipeline-"));
  try {
    await writeFile(join(dir, "rules.yaml"), RULES);
    const config = loadConfig({
      env: { DATA_DIR: join(dir, "data"), DATABASE_URL: `file:${join(dir, "db.sqlite")}`, RULES_FILE: join(dir, "rules.yaml") },
      cwd: dir, envFile: join(dir, "none.env"), isTty: false,
    });
    const db = openDatabase(config.databasePath);
    const rules = await startRulesRuntime({ file: config.rulesFile, logger: silentLogger, watch: false });
    const pipeline = createPipeline({ config, db, logger: silentLogger, rules });
    await pipeline.recover();
    const messages = Array.from({ length: 64 }, (_, i) => makeMessage(size, i));
    const latencies: number[] = [];
    let done = 0;
    let maxLagMs = 0;
    let lastTick = performance.now();
    const lagTimer = setInterval(() => {
      const t = performance.now();
      maxLagMs = Math.max(maxLagMs, t - lastTick - 10);
      lastTick = t;
    }, 10);
    let peakRss = process.memoryUsage.rss();
    const end = performance.now() + seconds * 1000;
    const caller = async (c: number): Promise<void> => {
      for (let i = c; performance.now() < end; i += callers) {
        const t0 = performance.now();
        await pipeline.receive(messages[i % messages.length]!, envelope);
        latencies.push(performance.now() - t0);
        done++;
        if (done % 256 === 0) peakRss = Math.max(peakRss, process.memoryUsage.rss());
      }
    };
    const t0 = performance.now();
    await Promise.all(Array.from({ length: callers }, (_, c) => caller(c)));
    const elapsed = (performance.now() - t0) / 1000;
    await pipeline.settle();
    clearInterval(lagTimer);
    const stats = pipeline.intakeStats();
    latencies.sort((a, b) => a - b);
    const pct = (p: number) => (latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0).toFixed(1);
    console.log(
      [
        `${String(size / 1024).padStart(4)} KB`, `callers ${String(callers).padStart(3)}`,
        `${(done / elapsed).toFixed(0).padStart(6)} msg/s`, `p50 ${pct(0.5)} ms`, `p99 ${pct(0.99)} ms`,
        `avg group ${(stats.committed / Math.max(1, stats.groups)).toFixed(1)}`,
        `spool flush ${(stats.flushMs / Math.max(1, stats.groups)).toFixed(1)} ms/group`,
        `wal fsync ${(stats.walSyncMs / Math.max(1, stats.groups)).toFixed(1)} ms/group`,
        `dir fsync ${(stats.dirSyncMs / Math.max(1, stats.groups)).toFixed(1)} ms/group`,
        `sqlite ${(stats.sqliteMs / Math.max(1, stats.groups)).toFixed(1)} ms/group (${((stats.sqliteMs / 1000 / elapsed) * 100).toFixed(0)}% of loop)`, `max loop lag ${maxLagMs.toFixed(0)} ms`,
        `peak RSS ${(peakRss / 1048576).toFixed(0)} MB`,
      ].join("  "),
    );
    await pipeline.close();
    rules.close();
    db.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

for (const size of values.sizes.split(",").map(Number)) {
  for (const callers of values.callers.split(",").map(Number)) await run(size, callers, Number(values.seconds));
}
