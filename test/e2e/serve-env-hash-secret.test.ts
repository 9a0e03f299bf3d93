/**
 * A secret that starts with `#` (`STATS_TOKEN=#…`, `RELAY_SMTP_PASS=#abc`), in each form an admin
 * writes it: unquoted, in single quotes, in double quotes.
 * - Through systemd's EnvironmentFile= all three reach serve as `#…` (systemd drops the quotes),
 *   and serve warned at every start that the `#` might be a note, a warning nothing in the file
 *   could silence. Now a `#` at a secret's start before a letter is its value, silently (a note,
 *   `# optional` or `s3cret # note`, is still warned about: serve-env-file-forms.test.ts).
 * - mailgw's own reader (.env, as `npm start` runs) takes all three as `#…`, silently.
 * - A source run that let Bun load .env itself (no --no-env-file) got "" from Bun for the
 *   unquoted form (Bun reads an unquoted `#` as a comment), and serve refused to start with "one
 *   of them is empty" for a file that sets both: the refusal now says Bun cut it and how to quote.
 * Through the real `mailgw serve` from source; the token is checked on /stats.
 */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { BARE_PATH, REPO_ROOT } from "../packaging/binary.ts";
import { serveDir, serveEachTest, type ServeProcess } from "../smtp/serve-process.ts";

const TOKEN = "#0a1b2c3d4e5f60718293";
const serve = serveEachTest();

const hashWarnings = (s: ServeProcess) => s.logs.filter((l) => l.level === "warn" && /has a '#'|quote/.test(String(l.msg)));

async function statsStatus(s: ServeProcess, token: string): Promise<number> {
  return (await fetch(`${s.httpUrl}/stats.json`, { headers: { Authorization: `Bearer ${token}` } })).status;
}

describe("from the environment (systemd's EnvironmentFile gives `#…` for all three forms)", () => {
  test("serve starts without a warning, and the secret is the value with its '#'", async () => {
    const s = await serve({ STATS_TOKEN: TOKEN, RELAY_SMTP_HOST: "127.0.0.1", RELAY_SMTP_USER: "gw", RELAY_SMTP_PASS: "#abc", WEBHOOK_SECRET: "#s3cret" });
    await s.waitForLog((l) => l.msg === "mailgw serve started");
    expect(hashWarnings(s)).toEqual([]);
    expect(await statsStatus(s, TOKEN)).toBe(200);
    expect(await statsStatus(s, TOKEN.slice(1))).toBe(401);
  });
});

describe("in .env, read by mailgw (npm start)", () => {
  for (const [form, line] of [["unquoted", `STATS_TOKEN=${TOKEN}`], ["single quotes", `STATS_TOKEN='${TOKEN}'`], ["double quotes", `STATS_TOKEN="${TOKEN}"`]] as const) {
    test(`${form}: the token with its '#', no warning`, async () => {
      const dir = serveDir();
      writeFileSync(join(dir, ".env"), `${line}\n`);
      const s = await serve({}, "", dir);
      await s.waitForLog((l) => l.msg === "mailgw serve started");
      expect(hashWarnings(s)).toEqual([]);
      expect(await statsStatus(s, TOKEN)).toBe(200);
    });
  }
});

describe("a source run that let Bun load .env itself", () => {
  async function bunServe(envLines: string): Promise<{ code: number; stderr: string; stdout: string }> {
    const dir = serveDir();
    writeFileSync(join(dir, ".env"), envLines);
    const proc = Bun.spawn([process.execPath, join(REPO_ROOT, "src/main.ts"), "serve"], {
      cwd: dir,
      env: { PATH: BARE_PATH, HOME: dir, LOG_FORMAT: "json", SMTP_HOST: "127.0.0.1", SMTP_PORT: "0", HTTP_HOST: "127.0.0.1", HTTP_PORT: "0" },
      stdout: "pipe",
      stderr: "pipe",
      timeout: 15_000,
    });
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    return { code, stderr, stdout };
  }

  test("an unquoted '#' secret Bun read as empty: the refusal says Bun cut it and how to quote it, never the value", async () => {
    const r = await bunServe("RELAY_SMTP_HOST=127.0.0.1\nRELAY_SMTP_USER=gw\nRELAY_SMTP_PASS=#abc\n");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("RELAY_SMTP_USER and RELAY_SMTP_PASS must be set together");
    expect(r.stderr).toContain("Bun also cut RELAY_SMTP_PASS at an unquoted '#'");
    expect(r.stderr).toContain("RELAY_SMTP_PASS='…#…'");
    expect(r.stderr).toContain("--no-env-file");
    expect(r.stderr + r.stdout).not.toContain("abc");
  }, 30_000);
});
