/**
 * Under systemd, serve's stdout is a journal stream and systemd names it in JOURNAL_STREAM
 * (`dev:inode`). Each line then starts with its syslog priority (`<4>` warn, `<6>` info), which
 * journald (SyslogLevelPrefix=yes, its default) takes as the entry's priority, so
 * `journalctl -u mailgw -p warning` shows the warnings and errors; before, every line was
 * priority 6. Anywhere else (JOURNAL_STREAM naming another file, or unset) lines are unprefixed.
 * Real serve from source, its stdout a file whose device and inode stand in for the journal's.
 */
import { afterAll, expect, test } from "bun:test";
import { readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BARE_PATH, freePort } from "../packaging/binary.ts";
import { greet, RawClient, sendMail } from "../smtp/helpers.ts";
import { cleanupBinary, serveCommand, serveDir, until } from "../smtp/serve-process.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) if (!process.env.KEEP) rmSync(d, { recursive: true, force: true });
  cleanupBinary();
}, 60_000);

/** Runs serve with stdout into `out.log`, sends one message, stops it; returns the log's lines. */
async function serveLines(journalStream: (outFile: string) => string): Promise<string[]> {
  const dir = serveDir();
  dirs.push(dir);
  const out = join(dir, "out.log");
  writeFileSync(out, "");
  const [smtpPort, httpPort] = [await freePort(), await freePort()];
  const proc = Bun.spawn(["bash", "-c", 'exec "$@" >> out.log 2>> err.log', "serve", ...serveCommand("source")], {
    cwd: dir,
    env: {
      PATH: BARE_PATH, HOME: dir, LOG_FORMAT: "json", SMTP_HOST: "127.0.0.1", SMTP_PORT: String(smtpPort),
      HTTP_HOST: "127.0.0.1", HTTP_PORT: String(httpPort), SMTP_HOSTNAME: "mx.test", JOURNAL_STREAM: journalStream(out),
    },
    stdout: "ignore",
    stderr: "ignore",
  });
  try {
    await until("serve logged its start", async () => readFileSync(out, "utf8").includes('"msg":"mailgw serve started"'), 20_000);
    const c = await RawClient.connect(smtpPort);
    await greet(c);
    expect(await sendMail(c)).toMatch(/^250 2\.0\.0 Queued as /);
    await c.cmd("QUIT");
    c.socket.destroy();
    await until("the session line", async () => readFileSync(out, "utf8").includes('"msg":"smtp session"'));
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
  }
  return readFileSync(out, "utf8").trim().split("\n");
}

test("stdout is the journal stream JOURNAL_STREAM names: each line starts with its syslog priority", async () => {
  const lines = await serveLines((out) => {
    const st = statSync(out, { bigint: true });
    return `${st.dev}:${st.ino}`;
  });
  // The example rules forward, and no relay is set: serve warns at start.
  const warn = lines.find((l) => l.includes('"level":"warn"'));
  expect(warn).toStartWith('<4>{"time":');
  const session = lines.find((l) => l.includes('"msg":"smtp session"'));
  expect(session).toStartWith('<6>{"time":');
  for (const line of lines) expect(JSON.parse(line.replace(/^<\d>/, "")).time).toBeString();
}, 30_000);

test("JOURNAL_STREAM naming another stream (a pipe or file in between): no prefix", async () => {
  const lines = await serveLines(() => "8:1");
  expect(lines.length).toBeGreaterThan(2);
  for (const line of lines) expect(line).toStartWith('{"time":');
}, 30_000);

// The reason serve refuses to start goes to stderr, which systemd gives the same journal stream:
// unprefixed it was priority 6 (info), and `journalctl -u mailgw -p err` did not show why serve failed.
test("a start-up refusal on stderr, the journal stream: each of its lines has priority 3 (err)", async () => {
  const dir = serveDir();
  dirs.push(dir);
  const err = join(dir, "err.log");
  writeFileSync(err, "");
  const st = statSync(err, { bigint: true });
  const proc = Bun.spawn(["bash", "-c", 'exec "$@" 2>> err.log', "serve", ...serveCommand("binary")], {
    cwd: dir,
    // LOG_LEVEL=debug: the stack trace follows the error line, every line of it prefixed too.
    env: { PATH: BARE_PATH, HOME: dir, LOG_LEVEL: "debug", SMTP_PORT: "70000", JOURNAL_STREAM: `${st.dev}:${st.ino}` },
    stdout: "ignore",
    stderr: "ignore",
  });
  expect(await proc.exited).not.toBe(0);
  const lines = readFileSync(err, "utf8").trimEnd().split("\n");
  expect(lines[0]).toStartWith("<3>mailgw: SMTP_PORT");
  expect(lines.length).toBeGreaterThan(1);
  for (const line of lines) expect(line).toStartWith("<3>");
}, 30_000);

/**
 * A crash (an exception no handler caught, a rejection nobody awaited): Bun printed a source
 * excerpt and the stack as bare lines on stderr, each a journal entry of priority 6, and nothing
 * in the JSON log. Now one error line of serve's log, `<3>` in the journal, then exit 1.
 * The crash is injected from outside: a preload (BUN_OPTIONS, which the compiled executable
 * honours too) that throws, or leaves a promise rejected, when serve gets SIGUSR2.
 */
const CRASH_PRELOAD = `process.on("SIGUSR2", () => {
  if (process.env.CRASH_KIND === "rejection") void Promise.reject(new Error("injected rejection"));
  else throw new Error("injected crash");
});
`;

for (const kind of ["exception", "rejection"] as const) {
  test(`a crash (${kind}) under systemd: one log line of priority 3 (err) with the reason, nothing bare, exit 1`, async () => {
    const dir = serveDir();
    dirs.push(dir);
    const out = join(dir, "journal.log");
    writeFileSync(out, "");
    writeFileSync(join(dir, "crash-preload.ts"), CRASH_PRELOAD);
    const st = statSync(out, { bigint: true });
    const [smtpPort, httpPort] = [await freePort(), await freePort()];
    // systemd gives stdout and stderr the same journal stream.
    const proc = Bun.spawn(["bash", "-c", 'exec "$@" >> journal.log 2>&1', "serve", ...serveCommand("binary")], {
      cwd: dir,
      env: {
        PATH: BARE_PATH, HOME: dir, LOG_FORMAT: "json", SMTP_HOST: "127.0.0.1", SMTP_PORT: String(smtpPort), HTTP_HOST: "127.0.0.1",
        HTTP_PORT: String(httpPort), JOURNAL_STREAM: `${st.dev}:${st.ino}`, BUN_OPTIONS: `--preload ${join(dir, "crash-preload.ts")}`, CRASH_KIND: kind,
      },
      stdout: "ignore",
      stderr: "ignore",
    });
    try {
      await until("serve logged its start", async () => readFileSync(out, "utf8").includes('"msg":"mailgw serve started"'), 20_000);
      proc.kill("SIGUSR2");
      expect(await proc.exited).toBe(1);
    } finally {
      proc.kill("SIGKILL");
    }
    const lines = readFileSync(out, "utf8").trimEnd().split("\n");
    // Every line is one of serve's log lines, with its priority: no bare excerpt or stack lines.
    for (const line of lines) expect(line).toMatch(/^<\d>\{"time":/);
    const crash = lines.filter((l) => l.startsWith("<3>"));
    expect(crash).toHaveLength(1);
    const fields = JSON.parse((crash[0] ?? "").slice(3)) as Record<string, unknown>;
    expect(fields.msg).toBe(`serve crashed (${kind === "exception" ? "uncaught exception" : "unhandled promise rejection"}): exiting with status 1 so that it is restarted`);
    expect(fields.error).toBe(kind === "exception" ? "injected crash" : "injected rejection");
    expect(fields.stack).toContain("crash-preload.ts");
  }, 40_000);
}
