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
import { RawClient, greet, sendMail, simpleMessage, terminated } from "../smtp/helpers.ts";
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

test("a low open-file limit lowers the connection limit: the client past it gets 421 at once, admitted ones can still store", async () => {
  if (spawnSync("prlimit", ["--version"]).status !== 0) {
    console.log("skipped: prlimit (util-linux) not installed");
    return;
  }
  const dir = serveDir();
  // 200 descriptors carry (200 - 64) / 2 = 68 sessions, each with its socket and its spool file.
  const serve = await startServe("source", dir, {}, 20_000, ["prlimit", "--nofile=200:200", "--"]);
  const clients: RawClient[] = [];
  try {
    const warning = await serve.waitForLog((l) => l.msg === "the open-file limit lowers the SMTP connection limit");
    expect(warning.max_clients).toBe(68);
    for (let i = 0; i < 250; i++) clients.push(await RawClient.connect(serve.smtpPort));
    const greetings = await Promise.all(clients.map((c) => c.reply(5000).catch(() => "no greeting")));
    const count = (re: RegExp): number => greetings.filter((g) => re.test(g)).length;
    expect(count(/^220 /)).toBe(68);
    expect(count(/^421 4\.7\.0 .*Too many connections/)).toBe(250 - 68);

    // Every admitted session has its socket; one of them still gets a spool file for its DATA.
    const admitted = clients.filter((_, i) => greetings[i]?.startsWith("220"));
    const c = admitted[0];
    if (c === undefined) throw new Error("no session admitted");
    expect(await c.cmd("EHLO client.example")).toMatch(/^250/);
    expect(await sendMail(c, "b@company.com", simpleMessage("under-the-file-limit"))).toMatch(/^250 2\.0\.0 Queued as /);
  } finally {
    for (const c of clients) c.end();
    expect(await serve.stop("SIGTERM")).toBe(0);
  }
}, 30_000);
