/**
 * Out of file descriptors: the real `mailgw serve` with its RLIMIT_NOFILE lowered (prlimit on
 * the running process, as a container's or a unit's low LimitNOFILE would have it) and more
 * idle connections opened than it has descriptors. A message whose DATA ends then gets
 * 451 4.3.0 (its spool file cannot be opened), serve stays up the whole time, and once the
 * connections close the same session's retry gets 250 and is archived.
 * Bun's process.memoryUsage() opens /proc/self/statm and threw EMFILE from the heap governor's
 * timer, which ended serve within a second of the descriptors running out.
 */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { RawClient, greet, simpleMessage, terminated } from "../smtp/helpers.ts";
import { archivedCopy, serveDir, startServe } from "../smtp/serve-process.ts";

const openFds = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

test("descriptors exhausted: 451 for the message that cannot be spooled, serve stays up, 250 once they free up", async () => {
  if (spawnSync("prlimit", ["--version"]).status !== 0) {
    console.log("skipped: prlimit (util-linux) not installed");
    return;
  }
  const dir = serveDir();
  const serve = await startServe("source", dir);
  const pid = serve.proc.pid;
  const idle: RawClient[] = [];
  try {
    const c = await RawClient.connect(serve.smtpPort);
    await greet(c);
    expect(await c.cmd("MAIL FROM:<a@sender.example>")).toMatch(/^250/);
    expect(await c.cmd("RCPT TO:<b@company.com>")).toMatch(/^250/);
    expect(await c.cmd("DATA")).toMatch(/^354/);

    const limit = openFds(pid) + 16;
    expect(spawnSync("prlimit", [`--pid=${pid}`, `--nofile=${limit}:${limit}`]).status).toBe(0);
    // More than the descriptors left: the rest wait in the listen backlog.
    for (let i = 0; i < 40; i++) idle.push(await RawClient.connect(serve.smtpPort));
    await Bun.sleep(2500); // the heap governor's idle check runs every second
    expect(openFds(pid)).toBeGreaterThanOrEqual(limit - 1);
    expect(serve.proc.exitCode).toBeNull();

    c.write(terminated(simpleMessage("no-descriptor")));
    expect(await c.reply(10_000)).toMatch(/^451 4\.3\.0 /);
    expect(serve.proc.exitCode).toBeNull();

    for (const s of idle.splice(0)) s.end();
    await Bun.sleep(1000);
    expect(serve.proc.exitCode).toBeNull();
    expect(await c.cmd("MAIL FROM:<a@sender.example>")).toMatch(/^250/);
    expect(await c.cmd("RCPT TO:<b@company.com>")).toMatch(/^250/);
    expect(await c.cmd("DATA")).toMatch(/^354/);
    c.write(terminated(simpleMessage("after-descriptors")));
    const reply = await c.reply(10_000);
    const id = /^250 2\.0\.0 Queued as (\S+)/.exec(reply)?.[1];
    expect(id).toBeDefined();
    await Bun.sleep(300);
    expect((await archivedCopy(dir, id ?? ""))?.toString("latin1")).toContain("Subject: after-descriptors\r\n");
    c.end();
  } finally {
    for (const s of idle) s.end();
    expect(await serve.stop("SIGTERM")).toBe(0);
  }
}, 30_000);
