/**
 * What a file per message costs the file system when files are also deleted (forward mode
 * removes each spool file once delivered), against reusing the files of delivered messages.
 * Both sides do what the spool writer thread does per message — write 4 KB, rename into place,
 * one syncfs per group of 7 — and retire each file 300 messages later:
 *   fresh:   `<n>.tmp` created (exclusive), written, renamed; retired by unlink
 *   reuse:   a retired file opened, overwritten, truncated, renamed; retired by a rename into
 *            `free/` (never done by mailgw: see docs/benchmarks.md for why)
 * Prints msg/s, this process's CPU per message and the whole machine's busy CPU per message
 * (/proc/stat), which includes the kernel's own workers (writeback, discards).
 *
 *   bun bench/spool-file-churn.ts fresh|reuse [--messages 20000] [--size 4096] [--dir /var/tmp/...]
 *
 * Run the two modes alternately with ~35 s between runs: on an ext4 without a journal, files
 * created within ~30 s of many unlinks cost more (ext4's recently_deleted), which is the effect
 * measured here, so one run's deletes must not spill into the next. Linux only (syncfs).
 * Not a test: numbers go to docs/benchmarks.md. The directory is removed at the end.
 */
import { closeSync, ftruncateSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, unlinkSync, writeSync } from "node:fs";
import { parseArgs } from "node:util";
import { loadLibcFunction } from "../src/libc.ts";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    messages: { type: "string", default: "20000" },
    size: { type: "string", default: "4096" },
    dir: { type: "string" },
  },
});
const mode = positionals[0];
if (mode !== "fresh" && mode !== "reuse") throw new Error("usage: bun bench/spool-file-churn.ts fresh|reuse [--messages N] [--size BYTES] [--dir DIR]");
const total = Number(values.messages);
const size = Number(values.size);
const dir = values.dir ?? `/var/tmp/mailgw-spool-churn-${process.pid}`;
/** Messages per syncfs, about the spool writer's group at 20 sessions. */
const GROUP = 7;
/** Messages between a file's write and its retirement (the delivery's lag). */
const LAG = 300;

/** Busy and idle clock ticks of the whole machine so far. */
function machineTicks(): { busy: number } {
  const cpu = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "").trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , iowait = 0, irq = 0, softirq = 0] = cpu;
  return { busy: user + nice + system + iowait + irq + softirq };
}

function writeAt(fd: number, bytes: Uint8Array): void {
  for (let at = 0; at < bytes.byteLength; ) at += writeSync(fd, bytes, at, bytes.byteLength - at, at);
}

rmSync(dir, { recursive: true, force: true });
mkdirSync(`${dir}/free`, { recursive: true });
const dirFd = openSync(dir, "r");
const syncfs = loadLibcFunction("syncfs", 1);
const bytes = new Uint8Array(size).fill(0x61);
const live: string[] = [];
const free: string[] = [];
let retired = 0;

const ticks0 = machineTicks();
const cpu0 = process.cpuUsage();
const t0 = performance.now();
for (let i = 0; i < total; i++) {
  const final = `${dir}/${i}.eml`;
  const reused = mode === "reuse" ? free.pop() : undefined;
  const path = reused ?? `${final}.tmp`;
  const fd = openSync(path, reused ? "r+" : "wx", 0o640);
  writeAt(fd, bytes);
  if (reused) ftruncateSync(fd, size);
  closeSync(fd);
  renameSync(path, final);
  live.push(final);
  if (i % GROUP === GROUP - 1) syncfs.call(dirFd);
  if (live.length > LAG) {
    const done = live.shift() as string;
    if (mode === "fresh") unlinkSync(done);
    else {
      const spare = `${dir}/free/${retired++}`;
      renameSync(done, spare);
      free.push(spare);
    }
  }
}
syncfs.call(dirFd);
const seconds = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
const busyTicks = machineTicks().busy - ticks0.busy;
closeSync(dirFd);
rmSync(dir, { recursive: true, force: true });

const perMessage = (micros: number): number => Math.round(micros / total);
console.log(
  `${mode}: ${Math.round(total / seconds)} msg/s (${total} × ${size} B); CPU/msg: this process ${perMessage(cpu.user + cpu.system)} µs ` +
    `(kernel ${perMessage(cpu.system)}), whole machine ${perMessage((busyTicks / 100) * 1e6)} µs`,
);
