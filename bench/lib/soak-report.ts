/**
 * The samples of bench/soak.ts and the verdict on them: a table of first / last / max / slope
 * over the second half / after the load, and the checks that fail the run (fds or threads that
 * grow and stay, RSS climbing in the second half, spool files left, a WAL never checkpointed).
 */
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface Sample {
  t: number; phase: string; rssMB: number; anonMB: number; hwmMB: number; fds: number; threads: number;
  dbMB: number; walMB: number; spool: number; msgS: number; queue: number; deferred: number;
}

export function countFiles(dir: string): number {
  if (!existsSync(dir)) return 0;
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) n += e.isDirectory() ? countFiles(join(dir, e.name)) : 1;
  return n;
}

/** Least-squares slope of y against t, per 600 s. */
export function slope(xs: Sample[], key: keyof Sample): number {
  const n = xs.length;
  if (n < 2) return 0;
  const mt = xs.reduce((a, s) => a + s.t, 0) / n, my = xs.reduce((a, s) => a + (s[key] as number), 0) / n;
  let num = 0, den = 0;
  for (const s of xs) { num += (s.t - mt) * ((s[key] as number) - my); den += (s.t - mt) ** 2; }
  return den ? (num / den) * 600 : 0;
}

/** Prints and writes (samples.csv, summary.md in `out`) the table; returns the problems found. */
export function summarize(samples: Sample[], loadEnd: number, settled: Sample, out: string, queueListFailures: number): string[] {
  const load = samples.slice(0, loadEnd);
  const second = load.slice(Math.floor(load.length / 2));
  const keys: (keyof Sample)[] = ["rssMB", "anonMB", "hwmMB", "fds", "threads", "dbMB", "walMB", "spool", "msgS", "queue"];
  const rows = ["| metric | first | last (load) | max | slope/10 min, 2nd half | after settle |", "|---|---:|---:|---:|---:|---:|"];
  const r = (x: number) => (Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(1));
  for (const k of keys) {
    const v = load.map((s) => s[k] as number);
    rows.push(`| ${k} | ${r(v[1] ?? v[0]!)} | ${r(v.at(-1)!)} | ${r(Math.max(...v))} | ${r(slope(second, k))} | ${r(settled[k] as number)} |`);
  }
  const table = rows.join("\n");
  console.log("\n" + table);
  const csv = ["t,phase," + keys.join(","), ...samples.map((s) => [s.t, s.phase, ...keys.map((k) => s[k])].join(","))].join("\n");
  writeFileSync(join(out, "samples.csv"), csv + "\n");
  writeFileSync(join(out, "summary.md"), table + "\n");

  const problems: string[] = [];
  const fdSlope = slope(second, "fds"), thSlope = slope(second, "threads"), rssSlope = slope(second, "rssMB");
  const secondStart = second[0]!;
  // Steady growth: a slope that also shows after the load stops (a plateau has none of it).
  if (fdSlope > 5 && settled.fds > secondStart.fds + 5) problems.push(`fds grow ${fdSlope.toFixed(1)}/10 min and stay (${secondStart.fds} → ${settled.fds} after settle)`);
  if (thSlope > 1 && settled.threads > secondStart.threads) problems.push(`threads grow ${thSlope.toFixed(1)}/10 min (${secondStart.threads} → ${settled.threads})`);
  const rssMean = second.reduce((a, s) => a + s.rssMB, 0) / second.length;
  if (rssSlope > Math.max(5, rssMean * 0.05)) problems.push(`RSS climbs ${rssSlope.toFixed(1)} MB/10 min over the second half`);
  if (settled.spool > 0) problems.push(`${settled.spool} spool files left after settle (queue ${settled.queue})`);
  if (settled.walMB > 64) problems.push(`WAL is ${settled.walMB.toFixed(0)} MB after settle (never checkpointed?)`);
  if (queueListFailures > 0) problems.push(`mailgw queue list failed ${queueListFailures} times`);
  return problems;
}
