/**
 * serve whose log reader stops reading without going away (a stopped `| logger`, a log shipper
 * stuck on its output, journald under pressure): the 64 KB pipe fills, and Bun keeps every
 * further line in memory rather than block. Before, serve's memory grew by what it logged for as
 * long as the reader stalled; now lines past a bound are dropped, and one warning says how many
 * once the reader catches up. Real serve from source, its stdout a pipe into a shell that reads
 * only once the test creates `go`, real SMTP sessions.
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BARE_PATH, freePort } from "../packaging/binary.ts";
import { greet, RawClient, sendOne, simpleMessage, terminated } from "../smtp/helpers.ts";
import { connects, serveCommand, serveDir, until } from "../smtp/serve-process.ts";

const dirs: string[] = [];
// 4,800 messages' files: their removal took 2.4 s on a quiet machine and over bun's default 5 s
// hook limit in a CI run (a failed "(unnamed)" test).
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}, 60_000);

/**
 * One session of 100 messages to 100 long recipients each, pipelined: its log line lists every
 * message (three recipients each, and the count) and the last one's recipients, ~100 KB of log
 * from one connection.
 */
async function bigSession(port: number): Promise<void> {
  const c = await RawClient.connect(port);
  await greet(c);
  const rcpts = Array.from({ length: 100 }, (_, i) => `RCPT TO:<${"r".repeat(220)}${i}@company.com>\r\n`).join("");
  for (let m = 0; m < 100; m++) {
    c.write(`MAIL FROM:<a@sender.example>\r\n${rcpts}DATA\r\n`);
    for (let i = 0; i < 102; i++) await c.reply();
    c.write(terminated(simpleMessage(`m${m}`)));
    expect(await c.reply()).toMatch(/^250 2\.0\.0 Queued as /);
  }
  await c.cmd("QUIT");
  c.end();
}

test("a log reader that stops reading: serve drops lines past a bound and says how many once it reads again", async () => {
  const dir = serveDir();
  dirs.push(dir);
  const [smtpPort, httpPort] = [await freePort(), await freePort()];
  // serve replaces bash (so the kill below reaches it); the reader is a process substitution.
  const script = 'exec "$@" > >(until [ -e go ]; do sleep 0.05; done; exec cat > out.log)';
  const proc = Bun.spawn(["bash", "-c", script, "serve", ...serveCommand("source")], {
    cwd: dir,
    env: { PATH: BARE_PATH, HOME: dir, LOG_FORMAT: "json", SMTP_HOST: "127.0.0.1", SMTP_PORT: String(smtpPort), HTTP_HOST: "127.0.0.1", HTTP_PORT: String(httpPort), SMTP_HOSTNAME: "mx.test", RATE_LIMIT_MAX: "100000" },
    stdout: "ignore",
    stderr: "ignore",
  });
  try {
    await until("serve listening", () => connects(smtpPort), 20_000);
    // ~5 MB of session lines into a pipe nobody reads: 48 sessions, 8 at a time.
    await Promise.all(Array.from({ length: 8 }, async () => {
      for (let i = 0; i < 6; i++) await bigSession(smtpPort);
    }));
    // Mail still flows while the log is stuck.
    const t0 = performance.now();
    const stuckId = await sendOne(smtpPort, "while the log is stuck");
    expect(performance.now() - t0).toBeLessThan(2000);

    writeFileSync(join(dir, "go"), "");
    const out = (): string => (existsSync(join(dir, "out.log")) ? readFileSync(join(dir, "out.log"), "utf8") : "");
    await until("the reader caught up and was told of the drop", async () => out().includes("log lines dropped"), 20_000);
    const afterId = await sendOne(smtpPort, "after the reader is back");
    await until("a session after the drop is logged", async () => out().includes(afterId), 10_000);

    const lines = out().trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    const warning = lines.find((l) => String(l.msg).startsWith("log lines dropped"));
    expect(warning?.level).toBe("warn");
    expect(Number(warning?.dropped)).toBeGreaterThan(0);
    // What the bound let through arrives whole: every line still parses (above), and the start-up line is there.
    expect(lines.some((l) => l.msg === "mailgw serve started")).toBe(true);
    expect(stuckId).not.toBe(afterId);
    expect(proc.exitCode).toBeNull();
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
  }
}, 90_000);
