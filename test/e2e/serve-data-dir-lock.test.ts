/**
 * One `mailgw serve` per DATA_DIR, with the real serve (src/serve/data-dir-lock.ts). Before the
 * lock, a second serve on the same data dir ran its start-up recovery first: it removed the
 * `.tmp` of a message the first serve was still receiving (that client got 451, the first serve
 * logged `rename … ENOENT`), and with other ports it kept running beside the first.
 * Now: the second serve exits 1 with one line naming DATA_DIR and the running serve's pid,
 * having touched nothing, and the message in flight completes with 250 into the archive;
 * `mailgw queue list` and `mailgw healthcheck` still work beside the running serve (they take
 * no lock); after kill -9 of the holder a new serve starts (the OS dropped the lock), and after
 * a clean stop too (compiled executable).
 * The database is locked as well: a second serve with a DATA_DIR of its own but the same
 * DATABASE_URL ran its recovery over the first one's queue (every forward waiting in the first
 * serve's spool had "no file" in the second's, so became `failed`) and a second delivery thread.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { readdir, readFile, realpath, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { REPO_ROOT } from "../packaging/binary.ts";
import { RawClient, greet } from "../smtp/helpers.ts";
import { archivedCopy, cleanupBinary, RULES_YAML, runServeOnce, serveDir, startServe, until, type ServeMode } from "../smtp/serve-process.ts";

/** Over the 64 KB that the SMTP front keeps in memory: this message is spilled to spool/<id>.tmp as it arrives. */
const SPILLED_MESSAGE_BYTES = 100 * 1024;
/** A refused serve exits at once; a serve that wrongly starts is stopped by this timeout. */
const SECOND_SERVE_TIMEOUT_MS = 15_000;

const dirs: string[] = [];
afterAll(async () => {
  cleanupBinary();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
}, 60_000);

async function workDir(): Promise<string> {
  // realpath: serve resolves ./data against its working directory, which the kernel reports resolved.
  const dir = await realpath(serveDir());
  dirs.push(dir);
  return dir;
}

function refusal(dir: string, pid: number): string {
  return `mailgw: DATA_DIR ${join(dir, "data")} is in use by another mailgw serve (pid ${pid}); stop it first or use another DATA_DIR\n`;
}

function message(bytes: number): Buffer {
  const head = "From: a@sender.example\r\nTo: b@company.com\r\nSubject: arriving while a second serve starts\r\n\r\n";
  const line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit 0123456789 abcdefghij\r\n";
  return Buffer.from(head + line.repeat(Math.ceil((bytes - head.length) / line.length)), "latin1");
}

async function spoolFiles(dir: string): Promise<string[]> {
  const entries = await readdir(join(dir, "data", "spool"), { withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => e.name).sort();
}

const archived = archivedCopy;

const FORWARD_RULE = `  - name: fwd
    priority: 10
    action: forward
    forward_to: [inbox@dest.example]
    conditions:
      - { field: rcpt, operator: equals, value: fwd@company.com }
`;


/** `mailgw <args>` from source in `dir`, with the environment the e2e serves get. */
async function mailgw(dir: string, args: string[], env: Record<string, string> = {}) {
  const proc = Bun.spawn([process.execPath, join(REPO_ROOT, "src/main.ts"), ...args], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? "", HOME: dir, LOG_FORMAT: "json", ...env },
    stdout: "pipe",
    stderr: "pipe",
    timeout: 15_000,
  });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { exitCode, stdout, stderr };
}

/** A second serve on `dir`, on ports of its own (0: any free one), so only the lock can stop it. */
function secondServe(mode: ServeMode, dir: string) {
  return runServeOnce(mode, dir, { SMTP_HOST: "127.0.0.1", HTTP_HOST: "127.0.0.1" }, [], SECOND_SERVE_TIMEOUT_MS);
}

describe("one serve per DATA_DIR", () => {
  test("a second serve is refused without touching the first one's message in flight; queue list and healthcheck still work", async () => {
    const dir = await workDir();
    const first = await startServe("source", dir);
    try {
      const client = await RawClient.connect(first.smtpPort);
      expect(await greet(client)).toStartWith("250");
      expect(await client.cmd("MAIL FROM:<a@sender.example>")).toStartWith("250");
      expect(await client.cmd("RCPT TO:<b@company.com>")).toStartWith("250");
      expect(await client.cmd("DATA")).toStartWith("354");
      const sent = message(SPILLED_MESSAGE_BYTES);
      client.write(sent);
      await until("the message spilled to a .tmp", async () => (await spoolFiles(dir)).some((n) => n.endsWith(".tmp")));
      const spoolBefore = await spoolFiles(dir);

      const second = await secondServe("source", dir);
      expect({ exitCode: second.exitCode, stderr: second.stderr }).toEqual({ exitCode: 1, stderr: refusal(dir, first.proc.pid) });
      // Refused before its recovery (or anything else) ran: not one log line, the spool as it was.
      expect(second.stdout).toBe("");
      expect(await spoolFiles(dir)).toEqual(spoolBefore);

      const queue = await mailgw(dir, ["queue", "list"]);
      expect({ exitCode: queue.exitCode, stderr: queue.stderr }).toEqual({ exitCode: 0, stderr: "" });
      const httpPort = new URL(first.httpUrl).port;
      const health = await mailgw(dir, ["healthcheck"], { HTTP_HOST: "127.0.0.1", HTTP_PORT: httpPort });
      expect({ exitCode: health.exitCode, stderr: health.stderr }).toEqual({ exitCode: 0, stderr: "" });

      client.write(".\r\n");
      const reply = await client.reply(30_000);
      client.end();
      const id = /^250 2\.0\.0 Queued as (\S+)/.exec(reply)?.[1];
      expect(id, reply).toBeString();
      let copy: Buffer | null = null;
      await until("the archive copy", async () => (copy = await archived(dir, id ?? "")) !== null);
      const file = copy as unknown as Buffer;
      // Our Received: header, then exactly the bytes sent.
      expect(file.subarray(0, 10).toString()).toBe("Received: ");
      expect(Buffer.compare(file.subarray(file.length - sent.length), sent)).toBe(0);
      expect(first.logs.filter((l) => l.level === "error")).toEqual([]);
    } finally {
      expect(await first.stop()).toBe(0);
    }
  }, 60_000);

  test("compiled: refused while held; after kill -9 of the holder, and after a clean stop, a new serve starts", async () => {
    const dir = await workDir();
    const killed = await startServe("binary", dir);
    let second: Awaited<ReturnType<typeof secondServe>>;
    try {
      second = await secondServe("binary", dir);
    } finally {
      killed.proc.kill("SIGKILL");
    }
    expect({ exitCode: second.exitCode, stderr: second.stderr }).toEqual({ exitCode: 1, stderr: refusal(dir, killed.proc.pid) });
    expect(await killed.proc.exited).not.toBe(0);

    const restarted = await startServe("binary", dir);
    expect(await restarted.stop()).toBe(0);
    // A clean stop releases the lock and clears the pid.
    expect(await readFile(join(dir, "data", "serve.lock"), "utf8")).toBe("");
    const again = await startServe("binary", dir);
    expect(await again.stop()).toBe(0);
  }, 90_000);

  test("a second serve with another DATA_DIR but the same DATABASE_URL is refused, the first one's queue untouched", async () => {
    const dir = await workDir();
    const dbPath = join(dir, "data", "mail-gateway.db");
    // The forward waits in the queue: its relay refuses connections.
    const relayDown = { RELAY_SMTP_HOST: "127.0.0.1", RELAY_SMTP_PORT: "9", RELAY_SMTP_SECURE: "none", QUEUE_RETRY_BASE_SECONDS: "3600" };
    await writeFile(join(dir, "rules.yaml"), RULES_YAML.replace("rules:\n", "rules:\n" + FORWARD_RULE));
    const first = await startServe("source", dir, relayDown);
    try {
      const client = await RawClient.connect(first.smtpPort);
      expect(await greet(client)).toStartWith("250");
      expect(await client.cmd("MAIL FROM:<a@sender.example>")).toStartWith("250");
      expect(await client.cmd("RCPT TO:<fwd@company.com>")).toStartWith("250");
      expect(await client.cmd("DATA")).toStartWith("354");
      client.write("Subject: waits for the relay\r\n\r\nhello\r\n.\r\n");
      expect(await client.reply(30_000)).toStartWith("250");
      client.end();
      await first.waitForLog((l) => l.msg === "deferred");

      const second = await runServeOnce("source", dir, { SMTP_HOST: "127.0.0.1", HTTP_HOST: "127.0.0.1", DATA_DIR: join(dir, "other-data"), DATABASE_URL: `file:${dbPath}`, ...relayDown }, [], SECOND_SERVE_TIMEOUT_MS);
      expect({ exitCode: second.exitCode, stderr: second.stderr }).toEqual({
        exitCode: 1,
        stderr: `mailgw: database ${dbPath} (DATABASE_URL) is in use by another mailgw serve (pid ${first.proc.pid}) with another DATA_DIR; stop it first or use another DATABASE_URL\n`,
      });
      expect(second.stdout).toBe("");
      const queue = await mailgw(dir, ["queue", "list", "--json"]);
      expect(queue.exitCode).toBe(0);
      const states = (JSON.parse(queue.stdout) as { state: string }[]).map((d) => d.state);
      expect(states).toEqual(["deferred"]);
    } finally {
      expect(await first.stop()).toBe(0);
    }
  }, 60_000);
});
