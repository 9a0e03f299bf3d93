/**
 * Env files as admins write them, read by the real `mailgw serve`: the same file reaches serve
 * through systemd's EnvironmentFile= (or docker --env-file), which keeps a note after a value
 * as part of it, and through mailgw's own reader (`--env-file`, ./.env), which drops it. Each
 * form is read as meant or refused naming the file and line (or the variable): never misread.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { BARE_PATH, REPO_ROOT } from "../packaging/binary.ts";
import { runServeOnce, serveDir, serveEachTest } from "../smtp/serve-process.ts";

const serve = serveEachTest();

function oneLine(stderr: string): string {
  const lines = stderr.trim().split("\n");
  expect(lines).toHaveLength(1);
  return lines[0] ?? "";
}

/** `mailgw ARGS` from source in `dir` with exactly `env` (plus PATH and HOME). */
async function mailgw(dir: string, env: Record<string, string>, ...args: string[]): Promise<{ code: number; stderr: string }> {
  const [bun = "bun", ...flags] = pkg.scripts.mailgw.split(" ");
  const cmd = [bun === "bun" ? process.execPath : bun, ...flags.map((a) => (a.endsWith(".ts") ? join(REPO_ROOT, a) : a)), ...args];
  const proc = Bun.spawn(cmd, { cwd: dir, env: { PATH: BARE_PATH, HOME: dir, NO_COLOR: "1", ...env }, stdout: "pipe", stderr: "pipe" });
  const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
  return { code, stderr };
}

describe("a note after a value, as systemd's EnvironmentFile and docker --env-file pass it", () => {
  test("DATA_DIR with a note: serve exits 1 naming it, and no second data dir is created", async () => {
    const dir = serveDir();
    const r = await runServeOnce("source", dir, { DATA_DIR: `${dir}/data # spool and archive` });
    expect(r.exitCode).toBe(1);
    expect(oneLine(r.stderr)).toBe(
      `mailgw: DATA_DIR=${dir}/data # spool and archive has a note in its value: systemd's EnvironmentFile and docker --env-file take everything after the = as the value (only a line that starts with # is a comment); move the note to a line of its own`,
    );
    expect(readdirSync(dir).filter((f) => f.startsWith("data"))).toEqual([]);
    // The queue CLI would look at another directory than serve: refused the same way.
    const q = await mailgw(dir, { DATA_DIR: `${dir}/data # spool` }, "queue", "list");
    expect(q.code).toBe(1);
    expect(q.stderr).toContain(`DATA_DIR=${dir}/data # spool has a note in its value`);
    expect(existsSync(`${dir}/data # spool`)).toBe(false);
  });

  test("a number with a note is refused with the reason, not only as 'not an integer'", async () => {
    const r = await runServeOnce("source", serveDir(), { RATE_LIMIT_MAX: "500 # per minute" });
    expect(r.exitCode).toBe(1);
    expect(oneLine(r.stderr)).toStartWith("mailgw: RATE_LIMIT_MAX=500 # per minute has a note in its value: systemd's EnvironmentFile");
    // `KEY=   # optional`: systemd drops the spaces and passes "# optional".
    const empty = await runServeOnce("source", serveDir(), { SMTP_HOSTNAME: "# machine name if unset" });
    expect(empty.exitCode).toBe(1);
    expect(oneLine(empty.stderr)).toContain("SMTP_HOSTNAME=# machine name if unset has a note in its value");
    // A login written into the relay's URL is not shown with it.
    const login = await runServeOnce("source", serveDir(), { RELAY_SMTP_HOST: "smtp://user:s3cret@smtp.example.com # relay" });
    expect(login.exitCode).toBe(1);
    expect(oneLine(login.stderr)).toContain("RELAY_SMTP_HOST=smtp://…@smtp.example.com # relay has a note in its value");
    expect(login.stderr).not.toContain("s3cret");
  });

  test("a secret with a note: serve starts and warns by name, never showing the value", async () => {
    const s = await serve({ RELAY_SMTP_HOST: "127.0.0.1", RELAY_SMTP_USER: "gw", RELAY_SMTP_PASS: "s3cret # relay login", WEBHOOK_SECRET: "# optional" });
    for (const name of ["RELAY_SMTP_PASS", "WEBHOOK_SECRET"]) {
      const line = await s.waitForLog((l) => l.level === "warn" && String(l.msg).startsWith(`${name} has a '#'`));
      expect(String(line.msg)).toContain("move it to a line of its own");
    }
    const all = JSON.stringify(s.logs);
    expect(all).not.toContain("s3cret");
    expect(all).not.toContain("relay login");
    expect(all).not.toContain("optional");
  });

  test("the same note in a file mailgw reads itself is dropped (--env-file)", async () => {
    const dir = serveDir();
    writeFileSync(join(dir, "gw.env"), `DATA_DIR=${dir}/data # spool\nRATE_LIMIT_MAX=500 # per minute\n`);
    const r = await mailgw(dir, {}, "queue", "list", "--env-file", join(dir, "gw.env"));
    // DATA_DIR read without its note: the database looked for is the one in <dir>/data.
    expect(r.stderr).toStartWith(`mailgw: no database at ${dir}/data/mail-gateway.db:`);
  });
});

describe("forms mailgw's own reader (.env, --env-file) reads as meant or refuses with file:line", () => {
  test("`KEY=   # note` (a template's blank with its note) is empty: no relay login nobody wrote", async () => {
    const dir = serveDir();
    // CRLF and a BOM, as a Windows editor saves it; `export` as a shell-sourced file has it.
    writeFileSync(join(dir, ".env"), "\ufeffexport RELAY_SMTP_HOST=127.0.0.1\r\nRELAY_SMTP_USER=   # login at the relay\r\nRELAY_SMTP_PASS=\t# its password\r\n");
    const s = await serve({}, undefined, dir);
    const started = await s.waitForLog((l) => l.msg === "mailgw serve started");
    expect(started.relay).toBe("127.0.0.1:587 (starttls)");
  });

  test("a quote left open is refused naming file, line and variable (systemd would read on into the next lines)", async () => {
    const dir = serveDir();
    const file = join(dir, "gw.env");
    writeFileSync(file, `RELAY_SMTP_HOST=smtp.example.com\nRELAY_SMTP_USER=gw\nRELAY_SMTP_PASS="s3cret\nSTATS_TOKEN=abc\n`);
    const r = await runServeOnce("source", dir, {}, ["--env-file", file]);
    expect(r.exitCode).toBe(1);
    expect(oneLine(r.stderr)).toStartWith(`mailgw: ${file}:3: RELAY_SMTP_PASS: the value opens a " quote that is not closed on this line`);
    expect(r.stderr).not.toContain("s3cret");
  });

  test("a file saved as Windows-1252 is refused naming the line, not read with U+FFFD in a password", async () => {
    const dir = serveDir();
    writeFileSync(join(dir, ".env"), Buffer.concat([Buffer.from("RELAY_SMTP_HOST=127.0.0.1\nRELAY_SMTP_USER=gw\nRELAY_SMTP_PASS=Passw"), Buffer.from([0xf6]), Buffer.from("rt\n")]));
    const r = await runServeOnce("source", dir, {});
    expect(r.exitCode).toBe(1);
    expect(oneLine(r.stderr)).toBe(`mailgw: ${join(dir, ".env")}:3: not UTF-8 text (saved as Windows-1252 or Latin-1?): save the file as UTF-8`);
  });

  test("a Windows-1252 byte in a comment line only: serve starts with the file's settings (it did before, and systemd reads it)", async () => {
    const dir = serveDir();
    writeFileSync(join(dir, ".env"), Buffer.concat([Buffer.from("# Konfiguration f"), Buffer.from([0xfc]), Buffer.from("r mailgw\nRELAY_SMTP_HOST=127.0.0.1\n")]));
    const s = await serve({}, undefined, dir);
    const started = await s.waitForLog((l) => l.msg === "mailgw serve started");
    expect(started.relay).toBe("127.0.0.1:587 (starttls)");
  });
});
