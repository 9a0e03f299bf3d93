/**
 * Signals that arrive while `mailgw serve` is still starting (after "spool recovered", before
 * "mailgw serve started"): the handlers must already be in place, because the OS default
 * action for SIGTERM and SIGHUP is to kill the process. SIGHUP during start-up is ignored and
 * the gateway comes up; SIGTERM during start-up stops it cleanly with exit 0.
 * The same holds earlier, while serve reads its configuration (before it has logged anything):
 * a `.env` that is a FIFO holds serve in that read for as long as the test wants.
 */
import { expect, test } from "bun:test";
import { closeSync, constants, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { BARE_PATH } from "../packaging/binary.ts";
import { logLines, serveCommand, serveDir } from "../smtp/serve-process.ts";

async function startAndSignalEarly(signal: NodeJS.Signals, then: "stop-after-start" | "wait-exit") {
  const dir = serveDir();
  const proc = Bun.spawn(serveCommand("source"), {
    cwd: dir,
    env: { PATH: BARE_PATH, HOME: dir, LOG_FORMAT: "json", SMTP_HOST: "127.0.0.1", SMTP_PORT: "0", HTTP_HOST: "127.0.0.1", HTTP_PORT: "0" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const messages: string[] = [];
  let signalled = false;
  for await (const lines of logLines(proc.stdout)) {
    for (const line of lines) {
      const msg = String((JSON.parse(line) as { msg?: unknown }).msg);
      messages.push(msg);
      if (msg === "spool recovered" && !signalled) {
        signalled = true;
        proc.kill(signal);
      }
      if (msg === "mailgw serve started" && then === "stop-after-start") proc.kill("SIGTERM");
    }
  }
  const code = await proc.exited;
  return { code, messages, stderr: await new Response(proc.stderr).text() };
}

test("SIGTERM during start-up: clean stop, exit 0", async () => {
  const run = await startAndSignalEarly("SIGTERM", "wait-exit");
  expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: "" });
  expect(run.messages).toContain("stopping: no new connections; sessions in flight may finish");
  expect(run.messages.at(-1)).toBe("stopped");
});

test("SIGHUP during start-up does not kill the process; it starts and stops normally", async () => {
  const run = await startAndSignalEarly("SIGHUP", "stop-after-start");
  expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: "" });
  expect(run.messages).toContain("mailgw serve started");
  expect(run.messages.at(-1)).toBe("stopped");
});

/**
 * Starts serve from source with `.env` a FIFO, waits until serve is blocked reading it (a
 * writer can open the FIFO only once a reader has), sends `signals`, then writes the file.
 */
async function signalWhileReadingConfig(signals: NodeJS.Signals[]) {
  const dir = serveDir();
  const envFile = join(dir, ".env");
  expect(Bun.spawnSync(["mkfifo", envFile]).exitCode).toBe(0);
  const proc = Bun.spawn(serveCommand("source"), {
    cwd: dir,
    env: { PATH: BARE_PATH, HOME: dir, LOG_FORMAT: "json", SMTP_HOST: "127.0.0.1", SMTP_PORT: "0", HTTP_HOST: "127.0.0.1", HTTP_PORT: "0" },
    stdout: "pipe",
    stderr: "pipe",
  });
  let fd = -1;
  for (const deadline = Date.now() + 20_000; fd < 0 && Date.now() < deadline; ) {
    try {
      fd = openSync(envFile, constants.O_WRONLY | constants.O_NONBLOCK);
    } catch {
      await Bun.sleep(2);
    }
  }
  expect(fd).toBeGreaterThanOrEqual(0);
  for (const signal of signals) {
    proc.kill(signal);
    await Bun.sleep(50);
  }
  await Bun.sleep(200);
  const aliveAfterSignals = proc.exitCode === null && proc.signalCode === null;
  writeSync(fd, "LOG_LEVEL=info\n");
  closeSync(fd);
  const messages: string[] = [];
  for await (const lines of logLines(proc.stdout)) {
    for (const line of lines) {
      const msg = String((JSON.parse(line) as { msg?: unknown }).msg);
      messages.push(msg);
      if (msg === "mailgw serve started" && !signals.includes("SIGTERM")) proc.kill("SIGTERM");
    }
  }
  const code = await proc.exited;
  return { aliveAfterSignals, code, signalCode: proc.signalCode, messages, stderr: await new Response(proc.stderr).text() };
}

test("SIGTERM while serve reads its configuration: not killed; it stops cleanly with exit 0 once it can", async () => {
  const run = await signalWhileReadingConfig(["SIGTERM"]);
  expect({ alive: run.aliveAfterSignals, code: run.code, signal: run.signalCode, stderr: run.stderr }).toEqual({ alive: true, code: 0, signal: null, stderr: "" });
  expect(run.messages).toContain("stopping: no new connections; sessions in flight may finish");
  expect(run.messages.at(-1)).toBe("stopped");
});

test("SIGHUP while serve reads its configuration is ignored: it starts and stops normally", async () => {
  const run = await signalWhileReadingConfig(["SIGHUP"]);
  expect({ alive: run.aliveAfterSignals, code: run.code, signal: run.signalCode, stderr: run.stderr }).toEqual({ alive: true, code: 0, signal: null, stderr: "" });
  expect(run.messages).toContain("mailgw serve started");
  expect(run.messages.at(-1)).toBe("stopped");
});

test("a second stop signal while serve reads its configuration exits at once with 1, as it does later", async () => {
  const run = await signalWhileReadingConfig(["SIGINT", "SIGTERM"]);
  expect({ code: run.code, signal: run.signalCode }).toEqual({ code: 1, signal: null });
  expect(run.messages.at(-1)).toBe("second stop signal: exiting without waiting");
});
