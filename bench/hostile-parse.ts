/**
 * Times the parser on hostile messages (test/parse/hostile-cases.ts): every case must be
 * turned into facts in well under a second. Prints a markdown table: size, time, which
 * limits were hit. `--raw` also times plain postal-mime with its defaults, for comparison.
 * Usage: bun bench/hostile-parse.ts [--raw] [case-name...]
 */
import PostalMime from "postal-mime";
import { extractFacts } from "../src/parse/extract.ts";
import { HOSTILE_CASES } from "../test/parse/hostile-cases.ts";

const ENVELOPE = { mailFrom: "bench@example.com", rcptTo: ["a@company.com"], clientIp: "127.0.0.1", helo: "bench", tls: false };
const BUDGET_MS = 1000;
/** Timed runs per case after one warm-up run; the table shows the slowest. */
const RUNS = 3;

const args = process.argv.slice(2);
const raw = args.includes("--raw");
const only = new Set(args.filter((arg) => !arg.startsWith("--")));

async function timeRawPostalMime(message: Uint8Array): Promise<string> {
  const started = performance.now();
  try {
    await PostalMime.parse(message);
    return `${(performance.now() - started).toFixed(0)} ms`;
  } catch (err) {
    return `${(performance.now() - started).toFixed(0)} ms (threw: ${(err as Error).message.slice(0, 40)})`;
  }
}

console.log(`| case | MB | extractFacts ms (max of 3) | ${raw ? "postal-mime defaults | " : ""}limits hit |`);
console.log(`|---|---:|---:|${raw ? "---|" : ""}---|`);
let worst = 0;
for (const hostile of HOSTILE_CASES) {
  if (only.size > 0 && !only.has(hostile.name)) continue;
  const message = hostile.build();
  const times: number[] = [];
  let facts = await extractFacts(message, ENVELOPE);
  for (let run = 0; run < RUNS; run++) {
    Bun.gc(true); // a pause left over from the previous case must not be billed to this one
    const started = performance.now();
    facts = await extractFacts(message, ENVELOPE);
    times.push(performance.now() - started);
  }
  const elapsed = Math.max(...times);
  worst = Math.max(worst, elapsed);
  const rawColumn = raw ? ` ${await timeRawPostalMime(message)} |` : "";
  const limits = (facts.parseError ?? "none").replace(/\|/g, "/").slice(0, 160);
  console.log(`| ${hostile.name} | ${(message.length / 1048576).toFixed(1)} | ${elapsed.toFixed(0)} |${rawColumn} ${limits} |`);
}
console.log(`\nworst case: ${worst.toFixed(0)} ms (budget ${BUDGET_MS} ms) ${worst < BUDGET_MS ? "OK" : "OVER BUDGET"}`);
