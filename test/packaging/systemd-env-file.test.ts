/**
 * `mailgw systemd install` keeps an existing /etc/mailgw/mailgw.env, which systemd then reads
 * with its own EnvironmentFile= rules (systemd.exec(5)). Lines systemd reads otherwise than
 * mailgw (`serve --env-file`, and install itself for the ports) are named, file:line and key,
 * never with their value. Runs the compiled executable below `--root`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { copyBinaryToTemp, runBinary, type CopiedBinary } from "./binary.ts";

let binary: CopiedBinary;
let root: string;

beforeAll(() => {
  binary = copyBinaryToTemp();
  root = mkdtempSync(join(tmpdir(), "mailgw-root-"));
}, 60_000);
afterAll(() => {
  binary.cleanup();
  rmSync(root, { recursive: true, force: true });
});

describe("systemd install and an existing env file systemd reads otherwise", () => {
  test("BOM, export, notes after values and backslashes are named by line; plain lines are not", async () => {
    const envPath = join(root, "etc/mailgw/mailgw.env");
    mkdirSync(join(root, "etc/mailgw"), { recursive: true });
    const lines = [
      "\ufeffSMTP_PORT=25",
      "export HTTP_PORT=3001",
      "# a comment, as systemd reads it",
      "RELAY_SMTP_HOST=smtp.example.com   # the relay",
      "RELAY_SMTP_USER=gw",
      "RELAY_SMTP_PASS=s3cr\\et",
      'STATS_TOKEN="tok3n" # for prometheus',
      'WEBHOOK_SECRET="a\\"b"',
      "SMTP_HOSTNAME=   # default: machine name",
      // Read alike by both: no warning.
      "LOG_LEVEL=info",
      "RATE_LIMIT_MAX=#x",
      "QUEUE_MAX_AGE_HOURS='9\\6'",
      'ARCHIVE_MAX_AGE_DAYS="3#0"',
    ];
    writeFileSync(envPath, lines.join("\r\n") + "\r\n", { mode: 0o600 });
    const run = await runBinary(binary.bin, ["systemd", "install", "--root", root, "--exec-path", "/usr/local/bin/mailgw"], { cwd: binary.dir });
    expect(run.exitCode).toBe(0);
    const note = "systemd keeps a note after the value as part of it (only a line that starts with # is a comment): move the note to a line of its own";
    const escape = "systemd reads a backslash as an escape and drops it, where mailgw keeps it: put the value in single quotes";
    expect(run.stderr.trimEnd().split("\n")).toEqual([
      `mailgw: warning: ${envPath}:1: SMTP_PORT: the file starts with a byte order mark, which systemd reads as part of the name, so it drops this setting: save the file as UTF-8 without BOM`,
      `mailgw: warning: ${envPath}:2: HTTP_PORT: systemd ignores a line that starts with 'export': remove 'export '`,
      `mailgw: warning: ${envPath}:4: RELAY_SMTP_HOST: ${note}`,
      `mailgw: warning: ${envPath}:6: RELAY_SMTP_PASS: ${escape}`,
      `mailgw: warning: ${envPath}:7: STATS_TOKEN: ${note}`,
      `mailgw: warning: ${envPath}:8: WEBHOOK_SECRET: ${escape}`,
      `mailgw: warning: ${envPath}:9: SMTP_HOSTNAME: ${note}`,
    ]);
    for (const secret of ["s3cr", "tok3n", "prometheus"]) expect(run.stderr).not.toContain(secret);
    // The file is the operator's: kept byte for byte.
    expect(readFileSync(envPath, "utf8")).toBe(lines.join("\r\n") + "\r\n");
  });
});
