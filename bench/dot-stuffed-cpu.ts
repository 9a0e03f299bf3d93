/**
 * CPU the compiled `mailgw serve` spends receiving one big message made of dot-stuffed lines
 * (`..` + CRLF: every line starts with an escape dot, the worst case for dot-unstuffing)
 * against one of the same size without the dots: starts each executable on a loopback port
 * with a fresh data dir, sends the message, and reads the process's user+system CPU from
 * /proc/<pid>/stat before the DATA and after the 250 (so the parse, spool and archive of the
 * message are included; the difference between the two kinds is the DATA scanner's).
 *
 * Usage: bun bench/dot-stuffed-cpu.ts [--port 35010] [--mb 20] [--runs 3] BINARY [BINARY ...]
 *   A/B: list the builds alternately, e.g. `old new old new`.
 */
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { Client, waitForPort } from "./lib/smtp-client.ts";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { port: { type: "string", default: "35010" }, mb: { type: "string", default: "20" }, runs: { type: "string", default: "3" } },
});
const PORT = Number(values.port);
const BYTES = Number(values.mb) * 1024 * 1024;
const HZ = 100; // CLK_TCK on Linux

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / HZ;
}

function body(line: string): Uint8Array {
  const head = "From: Bench <bench@sender.org>\r\nTo: inbox@company.com\r\nSubject: dots\r\nContent-Type: text/plain\r\n\r\n";
  return new TextEncoder().encode(head + line.repeat(Math.ceil((BYTES - head.length) / line.length)));
}

async function measure(binary: string, message: Uint8Array): Promise<{ cpu: number; wall: number }> {
  const dir = await mkdtemp(join(tmpdir(), "mailgw-dots-"));
  await writeFile(join(dir, "rules.yaml"), "domains: [company.com]\ndefault: { action: archive, category: default }\nrules: []\n");
  const server = Bun.spawn([binary, "serve"], {
    cwd: dir,
    env: { ...process.env, SMTP_HOST: "127.0.0.1", SMTP_PORT: String(PORT), HTTP_HOST: "127.0.0.1", HTTP_PORT: "0", SMTP_HOSTNAME: "mx.bench",
      RATE_LIMIT_MAX: "1000000000", LOG_FORMAT: "json", LOG_LEVEL: "warn", MAX_MESSAGE_SIZE_MB: String(Math.ceil(BYTES / 1048576) + 5) },
    stdout: "ignore", stderr: "inherit",
  });
  try {
    await waitForPort(PORT);
    const client = await Client.open(PORT);
    await Bun.sleep(300);
    const cpu0 = cpuSeconds(server.pid);
    const t0 = performance.now();
    await client.send(message);
    const result = { cpu: cpuSeconds(server.pid) - cpu0, wall: (performance.now() - t0) / 1000 };
    client.close();
    return result;
  } finally {
    server.kill("SIGTERM");
    await server.exited;
    await rm(dir, { recursive: true, force: true });
  }
}

if (positionals.length === 0) throw new Error("give at least one mailgw executable");
const kinds = { "dot lines (..CRLF)": body("..\r\n"), "plain lines (ab CRLF)": body("ab\r\n") };
console.log(`# ${values.mb} MB message, server CPU (user+system) from DATA to 250; load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);
for (let run = 0; run < Number(values.runs); run++) {
  for (const binary of positionals) {
    for (const [name, message] of Object.entries(kinds)) {
      const { cpu, wall } = await measure(resolve(binary), message);
      console.log(`${binary.padEnd(28)} ${name.padEnd(22)} cpu ${cpu.toFixed(2)} s  wall ${wall.toFixed(2)} s`);
    }
  }
}
