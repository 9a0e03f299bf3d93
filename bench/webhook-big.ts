/**
 * Memory of webhook posts of big messages: starts `mailgw serve` (dist/mailgw, or source with
 * --source) with a webhook rule pointing at a receiver in its own process (so its memory is not
 * counted), sends N messages of a text part plus a base64 attachment (as MUAs send them) at once,
 * and reports the server's RSS before, its peak until every post arrived, and the growth.
 * `--archive` uses an archive rule instead (the ingress alone, to tell the two apart).
 *
 * Usage: bun bench/webhook-big.ts [--port 2525] [--attach-mb 18] [--attachments 1] [--width 76]
 *          [--text-mb 0] [--count 1] [--source] [--archive] [--secret] [--trace]
 *   --text-mb M      the text part is M MB of 8-bit UTF-8 lines (with --attach-mb 0: a text message)
 *   --text-qp        the text part in quoted-printable instead of 8bit
 *   --memory-limit-mb L  serve runs in a memory cgroup (v1, root) limited to L MB, as under systemd's
 *                    MemoryMax=; reports whether the kernel's OOM killer ended it and the cgroup's peak
 *   --attachments N  the attach-mb split over N attachments
 *   --width W        base64 line length
 *   --secret         WEBHOOK_SECRET set (posts are signed)
 *   --trace          also print the RSS samples (every 10 ms) from the first DATA to the last post
 * The receiver listens on --port + 1.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { Client, waitForPort } from "./lib/smtp-client.ts";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "2525" },
    "attach-mb": { type: "string", default: "18" },
    attachments: { type: "string", default: "1" },
    width: { type: "string", default: "76" },
    count: { type: "string", default: "1" },
    "text-mb": { type: "string", default: "0" },
    "text-qp": { type: "boolean", default: false },
    "memory-limit-mb": { type: "string", default: "0" },
    source: { type: "boolean", default: false },
    archive: { type: "boolean", default: false },
    secret: { type: "boolean", default: false },
    trace: { type: "boolean", default: false },
  },
});
const REPO = resolve(import.meta.dir, "..");
const PORT = Number(values.port);
const HOOK_PORT = PORT + 1;

function rssMb(pid: number): number {
  if (!existsSync(`/proc/${pid}/status`)) return 0; // ended (the OOM killer, with --memory-limit-mb)
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

/** The text part: a line, or --text-mb MB of numbered lines with a few non-ASCII characters. */
function textPart(mb: number): string {
  if (mb <= 0) return "Please find the scans attached.";
  const lines: string[] = [];
  for (let size = 0, i = 0; size < mb * 1024 * 1024; i++) {
    const line = `Line ${i} of the export: quantity ${i % 97}, price ${(i % 1000) / 10} €, "status" ok`;
    lines.push(values["text-qp"] ? quotedPrintable(line) : line);
    size += Buffer.byteLength(line) + 2;
  }
  return lines.join("\r\n");
}

/** A short line in quoted-printable: every byte over 127 and "=" as =XX. */
function quotedPrintable(line: string): string {
  return [...Buffer.from(line)].map((b) => (b > 127 || b === 0x3d ? `=${b.toString(16).toUpperCase().padStart(2, "0")}` : String.fromCharCode(b))).join("");
}

/** A multipart/mixed message: a text part (a line, or textMb MB) and `attachBytes` of binary as base64 (76-char lines) in `parts` attachments. */
function bigMessage(attachBytes: number, subject: string, parts = 1, textMb = 0): Uint8Array {
  const head = [
    "From: Bench <bench@sender.org>", "To: inbox@company.com", `Subject: ${subject}`, "MIME-Version: 1.0",
    'Content-Type: multipart/mixed; boundary="b1"', "", "--b1", "Content-Type: text/plain; charset=utf-8", `Content-Transfer-Encoding: ${values["text-qp"] ? "quoted-printable" : "8bit"}`, "",
    textPart(textMb), "",
  ].join("\r\n");
  const attachments = Array.from({ length: attachBytes > 0 ? parts : 0 }, (_, n) => {
    const attachment = Buffer.alloc(Math.floor(attachBytes / parts));
    for (let i = 0; i < attachment.length; i++) attachment[i] = (i * 2654435761 + n) >>> 24;
    const b64 = attachment.toString("base64").replace(new RegExp(`.{${Number(values.width)}}`, "g"), "$&\r\n");
    return `--b1\r\nContent-Type: application/pdf; name="scan${n}.pdf"\r\nContent-Disposition: attachment; filename="scan${n}.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n${b64}\r\n`;
  });
  return Buffer.from(`${head}${attachments.join("")}--b1--\r\n`);
}

const receiverSource = `
let posts = 0;
Bun.serve({ port: ${HOOK_PORT}, hostname: "127.0.0.1", maxRequestBodySize: 1 << 30, async fetch(req) {
  const body = await req.arrayBuffer();
  posts++;
  console.log(JSON.stringify({ posts, bytes: body.byteLength }));
  return new Response("ok");
} });
console.log("ready");
`;

const dir = await mkdtemp(join(tmpdir(), "mailgw-webhook-big-"));
await writeFile(join(dir, "receiver.ts"), receiverSource);
const action = values.archive ? "action: archive" : `action: webhook, url: "http://127.0.0.1:${HOOK_PORT}/in"`;
await writeFile(join(dir, "rules.yaml"), `domains: [company.com]\ndefault: { action: drop, category: default }\nrules:\n  - { name: hook, category: c, ${action}, conditions: [{ field: rcpt, operator: equals, value: inbox@company.com }] }\n`);
const receiver = Bun.spawn([process.execPath, join(dir, "receiver.ts")], { stdout: "pipe", stderr: "inherit" });
let received = 0;
void (async () => {
  for await (const chunk of receiver.stdout) received += (new TextDecoder().decode(chunk).match(/"posts"/g) ?? []).length;
})();
const serveCmd = values.source ? [process.execPath, join(REPO, "src/main.ts"), "serve"] : [join(REPO, "dist/mailgw"), "serve"];
const limitMb = Number(values["memory-limit-mb"]);
const cgroup = limitMb > 0 ? `/sys/fs/cgroup/memory/mailgw-webhook-big-${process.pid}` : null;
if (cgroup) {
  mkdirSync(cgroup);
  writeFileSync(join(cgroup, "memory.limit_in_bytes"), String(limitMb * 1024 * 1024));
  if (existsSync(join(cgroup, "memory.memsw.limit_in_bytes"))) writeFileSync(join(cgroup, "memory.memsw.limit_in_bytes"), String(limitMb * 1024 * 1024));
}
// In the cgroup from its first instruction: the shell joins it, then becomes serve.
const cmd = cgroup ? ["sh", "-c", `echo $$ > ${cgroup}/cgroup.procs && exec "$@"`, "sh", ...serveCmd] : serveCmd;
const server = Bun.spawn(cmd, {
  cwd: dir,
  env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir, SMTP_HOST: "127.0.0.1", SMTP_PORT: String(PORT), HTTP_HOST: "127.0.0.1", HTTP_PORT: "0", SMTP_HOSTNAME: "mx.bench",
    LOG_FORMAT: "json", LOG_LEVEL: "warn", MAX_MESSAGE_SIZE_MB: "40", QUEUE_RETRY_BASE_SECONDS: "1", ...(values.secret ? { WEBHOOK_SECRET: "bench-secret" } : {}) },
  stdout: "ignore", stderr: "inherit",
});
try {
  await waitForPort(PORT);
  await waitForPort(HOOK_PORT);
  const count = Number(values.count);
  const messages = Array.from({ length: count }, (_, i) => bigMessage(Number(values["attach-mb"]) * 1024 * 1024, `big ${i}`, Number(values.attachments), Number(values["text-mb"])));
  // Warm-up: one small post loads the fetch and parse code before the baseline is read.
  const warm = await Client.open(PORT);
  await warm.send(bigMessage(1000, "warm-up"));
  warm.close();
  const deadline = Date.now() + 10_000;
  while (!values.archive && received < 1 && Date.now() < deadline) await Bun.sleep(20);
  await Bun.sleep(1000);
  const before = rssMb(server.pid);
  let peak = before;
  const samples: string[] = [];
  const sampler = setInterval(() => {
    const rss = rssMb(server.pid);
    peak = Math.max(peak, rss);
    samples.push(`${(performance.now() - t0).toFixed(0)}:${rss.toFixed(0)}${received > 1 ? "p" : ""}`);
  }, 10);
  const t0 = performance.now();
  const clients = await Promise.all(messages.map(() => Client.open(PORT)));
  await Promise.all(clients.map((c, i) => c.send(messages[i]!)));
  const accepted = performance.now() - t0;
  const afterAccept = rssMb(server.pid);
  const wantPosts = values.archive ? 0 : 1 + count;
  while (received < wantPosts && performance.now() - t0 < 120_000 && server.exitCode === null && server.signalCode === null) await Bun.sleep(20);
  const posted = performance.now() - t0;
  await Bun.sleep(500);
  clearInterval(sampler);
  const size = (messages[0]!.byteLength / 1024 / 1024).toFixed(1);
  console.log(`mailgw ${values.source ? "source" : "dist/mailgw"}, ${count} × ${size} MB (${values["text-mb"]} MB text, ${values["attach-mb"]} MB in ${values.attachments} attachment(s)), rule: ${values.archive ? "archive" : `webhook${values.secret ? " (signed)" : ""}`}`);
  console.log(`accepted in ${accepted.toFixed(0)} ms${values.archive ? "" : `, posted (${received - 1} of ${count}) in ${posted.toFixed(0)} ms`}`);
  console.log(`server RSS ${before.toFixed(0)} MB before, ${afterAccept.toFixed(0)} MB at the last 250, peak ${peak.toFixed(0)} MB (growth ${(peak - before).toFixed(0)} MB = ${((peak - before) / Number(size)).toFixed(1)}× per message size)`);
  if (values.trace) console.log(`RSS MB by ms (p: a post arrived): ${samples.join(" ")}`);
  if (cgroup) {
    const peakMb = Number(readFileSync(join(cgroup, "memory.max_usage_in_bytes"), "utf8")) / 1048576;
    const oom = /oom_kill (\d+)/.exec(readFileSync(join(cgroup, "memory.oom_control"), "utf8"))?.[1] ?? "?";
    console.log(`cgroup limit ${limitMb} MB: peak ${peakMb.toFixed(0)} MB (page cache included), OOM kills ${oom}, serve ${server.exitCode === null ? "running" : `exited (${server.signalCode ?? server.exitCode})`}`);
  }
  for (const c of clients) c.close();
} finally {
  server.kill("SIGTERM");
  await server.exited;
  receiver.kill("SIGTERM");
  await receiver.exited;
  await rm(dir, { recursive: true, force: true });
  if (cgroup) rmdirSync(cgroup);
}
