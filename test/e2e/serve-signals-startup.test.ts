/**
 * Signals that arrive while `mailgw serve` is still starting (after "spool recovered", before
 * "mailgw serve started"): the handlers must already be in place, because the OS default
 * action for SIGTERM and SIGHUP is to kill the process. SIGHUP during start-up is ignored and
 * the gateway comes up; SIGTERM during start-up stops it cleanly with exit 0.
 */
import { expect, test } from "bun:test";
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
