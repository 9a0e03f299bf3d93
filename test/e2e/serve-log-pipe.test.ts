/**
 * serve whose log reader goes away (`mailgw serve | head`, a killed `tee`, a log shipper
 * restarted): the gateway keeps receiving mail and logs to stderr from then on. Before, the
 * first log write after the reader had gone raised an uncaught EPIPE and serve exited.
 * Real serve from source, its stdout a pipe into `head -n 1`, real SMTP sessions.
 * Likewise a log file on a full disk (`serve > /var/log/mailgw.log`): a tmpfs (needs root).
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { withTmpfs } from "../helpers/tmpfs.ts";
import { BARE_PATH, freePort } from "../packaging/binary.ts";
import { greet, RawClient, sendMail, sendOne } from "../smtp/helpers.ts";
import { connects, serveCommand, serveDir, until } from "../smtp/serve-process.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}, 60_000);

test("the log reader gone: serve goes on accepting mail and logs to stderr", async () => {
  const dir = serveDir();
  dirs.push(dir);
  const [smtpPort, httpPort] = [await freePort(), await freePort()];
  const script = 'exec "$@" > >(head -n 1 > first.log) 2> err.log';
  const proc = Bun.spawn(["bash", "-c", script, "serve", ...serveCommand("source")], {
    cwd: dir,
    env: { PATH: BARE_PATH, HOME: dir, LOG_FORMAT: "json", SMTP_HOST: "127.0.0.1", SMTP_PORT: String(smtpPort), HTTP_HOST: "127.0.0.1", HTTP_PORT: String(httpPort), SMTP_HOSTNAME: "mx.test" },
    stdout: "ignore",
    stderr: "ignore",
  });
  try {
    await until("serve listening", () => connects(smtpPort), 20_000);
    await until("head has its line and is gone", async () => existsSync(join(dir, "first.log")) && readFileSync(join(dir, "first.log"), "utf8").length > 0);
    for (let i = 0; i < 3; i++) {
      const c = await RawClient.connect(smtpPort);
      await greet(c);
      expect(await sendMail(c)).toMatch(/^250 2\.0\.0 Queued as /);
      await c.cmd("QUIT");
      c.socket.destroy();
    }
    const err = (): string => readFileSync(join(dir, "err.log"), "utf8");
    await until("session lines on stderr", async () => err().includes('"msg":"smtp session"'));
    expect(proc.exitCode).toBeNull();
    const lines = err().trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.some((l) => l.level === "warn" && String(l.msg).startsWith("log output on stdout failed"))).toBe(true);
    expect(err()).not.toContain("    at ");
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
  }
}, 60_000);

test("the log file's disk full: every session line is whole in the file or on stderr, none lost", () =>
  withTmpfs("mailgw-log-full-", 1, async (mnt) => {
    const dir = serveDir();
    dirs.push(dir);
    // A page or two left: the start-up lines fit, a few session lines later the disk is full.
    writeFileSync(join(mnt, "filler"), Buffer.alloc(1024 * 1024 - 6000));
    const [smtpPort, httpPort] = [await freePort(), await freePort()];
    const proc = Bun.spawn(["bash", "-c", 'exec "$@" > "$LOG" 2> err.log', "serve", ...serveCommand("source")], {
      cwd: dir,
      env: { PATH: BARE_PATH, HOME: dir, LOG: join(mnt, "mailgw.log"), LOG_FORMAT: "json", SMTP_HOST: "127.0.0.1", SMTP_PORT: String(smtpPort), HTTP_HOST: "127.0.0.1", HTTP_PORT: String(httpPort), SMTP_HOSTNAME: "mx.test" },
      stdout: "ignore",
      stderr: "ignore",
    });
    try {
      await until("serve listening", () => connects(smtpPort), 20_000);
      const ids: string[] = [];
      for (let i = 0; i < 30; i++) ids.push(await sendOne(smtpPort, `log-full-${i}`));
      const err = (): string => readFileSync(join(dir, "err.log"), "utf8");
      await until("the last session line on stderr", async () => err().includes(ids[ids.length - 1] ?? "?"));
      expect(err()).toContain('"error":"ENOSPC"');
      const whole = [readFileSync(join(mnt, "mailgw.log"), "utf8"), err()]
        .flatMap((text) => text.split("\n"))
        .filter((line) => line.startsWith("{") && line.endsWith("}"))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      const logged = new Set(whole.filter((l) => l.msg === "smtp session").map((l) => String(l.id)));
      expect(ids.filter((id) => !logged.has(id))).toEqual([]);
      expect(proc.exitCode).toBeNull();
    } finally {
      proc.kill("SIGTERM");
      await proc.exited;
    }
  }), 60_000);
