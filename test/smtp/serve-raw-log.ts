/**
 * serve from source with its log kept as raw lines, for the suites that test what the log
 * writes. Apart from serve-process.ts because it registers an `afterEach`, which only the test
 * runner has: bench scripts import serve-process.ts too.
 */
import { afterEach } from "bun:test";
import type { Subprocess } from "bun";
import { BARE_PATH } from "../packaging/binary.ts";
import { logLines, serveCommand, serveDir } from "./serve-process.ts";

/** Processes of startServeRawLog still running after their test: killed then. */
const rawLogProcs: Subprocess[] = [];
afterEach(() => {
  for (const p of rawLogProcs.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
});

/**
 * serve from source with LOG_FORMAT `format`, its log kept as raw lines (startServe parses JSON
 * ones): for tests of what the log writes. Killed after the test if still running.
 */
export async function startServeRawLog(format: "text" | "json") {
  const dir = serveDir();
  const proc = Bun.spawn(serveCommand("source"), {
    cwd: dir,
    env: { PATH: BARE_PATH, HOME: dir, LOG_FORMAT: format, SMTP_HOST: "127.0.0.1", SMTP_PORT: "0", HTTP_HOST: "127.0.0.1", HTTP_PORT: "0", SMTP_HOSTNAME: "mx.test" },
    stdout: "pipe",
    stderr: "ignore",
  });
  rawLogProcs.push(proc);
  const lines: string[] = [];
  void (async () => {
    for await (const chunk of logLines(proc.stdout)) lines.push(...chunk);
  })();
  const waitForLine = async (pred: (l: string) => boolean, ms = 20_000): Promise<string> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = lines.find(pred);
      if (found !== undefined) return found;
      if (Date.now() > deadline) throw new Error(`log line not seen in ${ms} ms: ${lines.slice(-3).join("\n")}`);
      await Bun.sleep(50);
    }
  };
  const started = await waitForLine((l) => l.includes(format === "text" ? " mailgw serve started " : '"msg":"mailgw serve started"'));
  const port = format === "text" ? / smtp=127\.0\.0\.1:(\d+) /.exec(started)?.[1] : /"smtp":"127\.0\.0\.1:(\d+)"/.exec(started)?.[1];
  return { proc, smtpPort: Number(port), lines, waitForLine };
}
