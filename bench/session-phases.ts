/**
 * Where a one-message-per-connection SMTP session spends its time, seen from the client: a few
 * probe sessions (raw sockets, TCP_NODELAY) loop connect → greeting → EHLO → MAIL → RCPT →
 * DATA → body and dot → QUIT → close against a running server, usually while smtp-source
 * drives the rest of the load (workload (c)); prints mean / p50 / p90 / p99 per phase in ms.
 * The (c) goal is about the cycle: 100 ms of it is smtp-server's early-talker wait before the
 * greeting; everything else is what the gateway adds.
 *
 *   bun bench/session-phases.ts --port 2525 [--sessions 5] [--seconds 5] [--size 4096] [--kept-open]
 *   # e.g. beside: smtp-source -s 95 -m 5000 -l 4096 -f a@b.example -t x@company.com 127.0.0.1:2525
 * --kept-open: each probe session stays connected and loops MAIL → RCPT → DATA → body (workload
 * (a), e.g. beside `smtp-source -s 17 -d`); the cycle is then one message's.
 *
 * Not a test: numbers go to docs/benchmarks.md. Loopback only.
 */
import { connect, type Socket } from "node:net";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "2525" },
    sessions: { type: "string", default: "5" },
    seconds: { type: "string", default: "5" },
    size: { type: "string", default: "4096" },
    rcpt: { type: "string", default: "x@company.com" },
    "kept-open": { type: "boolean", default: false },
  },
});
const port = Number(values.port);
const line = "x".repeat(78) + "\r\n";
const body = "Subject: probe\r\n\r\n" + line.repeat(Math.max(1, Math.round(Number(values.size) / line.length)));
const phases = new Map<string, number[]>();
const record = (name: string, ms: number) => {
  const list = phases.get(name) ?? [];
  list.push(ms);
  phases.set(name, list);
};
const endAt = performance.now() + Number(values.seconds) * 1000;

/** Resolves with the final line of the next reply (`NNN text`, after any `NNN-` lines). */
function reply(sock: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = "";
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString("latin1");
      const last = buffered.split("\r\n").find((l) => /^\d{3} /.test(l));
      if (last === undefined) return;
      sock.off("data", onData);
      sock.off("error", reject); // a kept-open session asks for thousands of replies
      resolve(last);
    };
    sock.on("data", onData);
    sock.once("error", reject);
  });
}

async function session(): Promise<void> {
  const start = performance.now();
  const sock = connect({ port, host: "127.0.0.1", noDelay: true });
  const closed = new Promise<void>((resolve) => sock.once("close", () => resolve()));
  await new Promise<void>((resolve) => sock.once("connect", () => resolve()));
  let at = performance.now();
  record("connect", at - start);
  const step = async (name: string, send: string | null): Promise<void> => {
    if (send !== null) sock.write(send);
    const text = await reply(sock);
    if (!/^[23]/.test(text)) throw new Error(`${name}: ${text}`);
    const now = performance.now();
    record(name, now - at);
    at = now;
  };
  await step("greeting", null);
  await step("ehlo", "EHLO probe.example\r\n");
  do {
    const cycleStart = at;
    await step("mail", "MAIL FROM:<probe@b.example>\r\n");
    await step("rcpt", `RCPT TO:<${values.rcpt}>\r\n`);
    await step("data", "DATA\r\n");
    await step("dot-250", body + ".\r\n");
    if (values["kept-open"]) record("message", at - cycleStart);
  } while (values["kept-open"] && performance.now() < endAt);
  await step("quit", "QUIT\r\n");
  await closed;
  const now = performance.now();
  record("close", now - at);
  record("cycle", now - start);
}

async function loop(): Promise<void> {
  while (performance.now() < endAt) await session();
}

await Promise.all(Array.from({ length: Number(values.sessions) }, loop));
const quantile = (sorted: number[], q: number) => sorted[Math.floor(q * (sorted.length - 1))] ?? NaN;
console.log("phase             n   mean    p50    p90    p99  (ms)");
for (const [name, list] of phases) {
  const sorted = [...list].sort((a, b) => a - b);
  const mean = sorted.reduce((s, x) => s + x, 0) / sorted.length;
  const cells = [mean, quantile(sorted, 0.5), quantile(sorted, 0.9), quantile(sorted, 0.99)].map((x) => x.toFixed(2).padStart(6));
  console.log(`${name.padEnd(10)} ${String(sorted.length).padStart(8)} ${cells.join(" ")}`);
}
