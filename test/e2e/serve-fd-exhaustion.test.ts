/**
 * Out of file descriptors: the real `mailgw serve` with its RLIMIT_NOFILE lowered (prlimit on
 * the running process, as a container's or a unit's low LimitNOFILE would have it) and more
 * connections opened than it has descriptors. SMTP clients waiting to be accepted get
 * 421 4.3.2 from the descriptor guard instead of waiting while Bun's accept loop spun a core;
 * with the descriptors held by HTTP clients (nothing left for the guard to give back) a message
 * whose DATA ends gets 451 4.3.0 (its spool file cannot be opened). serve stays up the whole
 * time, and once the connections close a message gets 250 and is archived.
 * Bun's process.memoryUsage() opens /proc/self/statm and threw EMFILE from the heap governor's
 * timer, which ended serve within a second of the descriptors running out.
 */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { RawClient, greet, sendMail, simpleMessage, terminated } from "../smtp/helpers.ts";
import { archivedCopy, serveDir, startServe, until, type ServeProcess } from "../smtp/serve-process.ts";

const openFds = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

/** CPU time (user + system) the process used over `ms`, as a share of one core. */
async function cpuShare(pid: number, ms: number): Promise<number> {
  const ticks = (): number => {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    return Number(fields[11]) + Number(fields[12]);
  };
  const before = ticks();
  await Bun.sleep(ms);
  return (ticks() - before) / 100 / (ms / 1000); // USER_HZ is 100 on Linux
}

function prlimitInstalled(): boolean {
  if (spawnSync("prlimit", ["--version"]).status === 0) return true;
  console.log("skipped: prlimit (util-linux) not installed");
  return false;
}

/** A `250 Queued as` reply's message is in the archive with its subject. */
async function expectArchivedIfQueued(dir: string, reply: string, subject: string): Promise<void> {
  const id = /^250 2\.0\.0 Queued as (\S+)/.exec(reply)?.[1];
  if (id === undefined) return;
  await until(`${id} archived`, async () => (await archivedCopy(dir, id)) !== null);
  expect((await archivedCopy(dir, id))?.toString("latin1")).toContain(`Subject: ${subject}\r\n`);
}

/**
 * A session of `serve` left in DATA (its spool file still to come), then the process's open-file
 * limit lowered to 16 above what it holds: the state both shortage tests start from.
 */
async function inDataWithFewFiles(serve: ServeProcess): Promise<{ c: RawClient; limit: number }> {
  const c = await RawClient.connect(serve.smtpPort);
  await greet(c);
  expect(await c.cmd("MAIL FROM:<a@sender.example>")).toMatch(/^250/);
  expect(await c.cmd("RCPT TO:<b@company.com>")).toMatch(/^250/);
  expect(await c.cmd("DATA")).toMatch(/^354/);
  const limit = openFds(serve.proc.pid) + 16;
  expect(spawnSync("prlimit", [`--pid=${serve.proc.pid}`, `--nofile=${limit}:${limit}`]).status).toBe(0);
  return { c, limit };
}

test("out of descriptors with clients waiting to be accepted: each gets 421 4.3.2 at once, no core spins, /healthz says why, served again once descriptors are free", async () => {
  if (!prlimitInstalled()) return;
  const dir = serveDir();
  const serve = await startServe("source", dir);
  const pid = serve.proc.pid;
  const idle: RawClient[] = [];
  try {
    const { c, limit } = await inDataWithFewFiles(serve);
    // More than the descriptors left: the rest wait in the listen backlog.
    for (let i = 0; i < 40; i++) idle.push(await RawClient.connect(serve.smtpPort));
    await Bun.sleep(2500); // the guard probes every second
    // Bun's accept loop retried the clients in the backlog on every turn: a core at 90-100%.
    expect(await cpuShare(pid, 2000)).toBeLessThan(0.3);
    const greetings = await Promise.all(idle.map((s) => s.reply(3000).catch(() => "no reply")));
    expect(greetings.filter((g) => !/^220 |^421 4\.3\.2 .*out of file descriptors/.test(g))).toEqual([]);
    expect(greetings.filter((g) => g.startsWith("421")).length).toBeGreaterThan(10);
    await serve.waitForLog((l) => l.msg === "out of file descriptors: new SMTP clients get 421 4.3.2 until some are free");
    const health = await fetch(`${serve.httpUrl}healthz`, { signal: AbortSignal.timeout(3000) });
    expect(health.status).toBe(503);
    expect(JSON.stringify(await health.json())).toContain("out of file descriptors");

    // The reserve the guard gave back leaves room for the spool file: stored, or 451; never 250 unstored.
    c.write(terminated(simpleMessage("while-short")));
    const whileShort = await c.reply(10_000);
    expect(whileShort).toMatch(/^250 2\.0\.0 Queued as |^451 4\.3\.0 /);
    await expectArchivedIfQueued(dir, whileShort, "while-short");

    for (const s of idle.splice(0)) s.end();
    await serve.waitForLog((l) => l.msg === "file descriptors free again: new SMTP clients are served");
    expect((await fetch(`${serve.httpUrl}healthz`)).status).toBe(200);
    const d = await RawClient.connect(serve.smtpPort);
    await greet(d);
    const after = await sendMail(d, "b@company.com", simpleMessage("after-descriptors"));
    expect(after).toMatch(/^250 2\.0\.0 Queued as /);
    await expectArchivedIfQueued(dir, after, "after-descriptors");
    c.end();
    d.end();
  } finally {
    for (const s of idle) s.end();
    expect(await serve.stop("SIGTERM")).toBe(0);
  }
}, 40_000);

test("descriptors taken by HTTP clients: 451 for the message that cannot be spooled, serve stays up, 250 once they free up", async () => {
  if (!prlimitInstalled()) return;
  const dir = serveDir();
  const serve = await startServe("source", dir);
  const pid = serve.proc.pid;
  const http: Socket[] = [];
  try {
    const { c, limit } = await inDataWithFewFiles(serve);
    // More HTTP clients than descriptors, the guard's reserve included: it has nothing left to give.
    const { port } = new URL(serve.httpUrl);
    for (let i = 0; i < 60; i++) {
      const s = connect({ host: "127.0.0.1", port: Number(port) });
      s.on("error", () => {});
      http.push(s);
    }
    await Bun.sleep(2500); // the heap governor's idle check runs every second
    expect(openFds(pid)).toBeGreaterThanOrEqual(limit - 1);
    expect(serve.proc.exitCode).toBeNull();

    c.write(terminated(simpleMessage("no-descriptor")));
    expect(await c.reply(10_000)).toMatch(/^451 4\.3\.0 /);
    expect(serve.proc.exitCode).toBeNull();

    for (const s of http.splice(0)) s.destroy();
    await Bun.sleep(1000);
    expect(serve.proc.exitCode).toBeNull();
    expect(await c.cmd("MAIL FROM:<a@sender.example>")).toMatch(/^250/);
    expect(await c.cmd("RCPT TO:<b@company.com>")).toMatch(/^250/);
    expect(await c.cmd("DATA")).toMatch(/^354/);
    c.write(terminated(simpleMessage("after-descriptors")));
    const reply = await c.reply(10_000);
    expect(reply).toMatch(/^250 2\.0\.0 Queued as /);
    await expectArchivedIfQueued(dir, reply, "after-descriptors");
    c.end();
  } finally {
    for (const s of http) s.destroy();
    expect(await serve.stop("SIGTERM")).toBe(0);
  }
}, 30_000);

test("a low open-file limit lowers the connection limit: the client past it gets 421 at once, admitted ones can still store", async () => {
  if (!prlimitInstalled()) return;
  const dir = serveDir();
  // 200 descriptors carry (200 - 96) / 2 = 52 sessions, each with its socket and its spool file.
  const serve = await startServe("source", dir, {}, 20_000, ["prlimit", "--nofile=200:200", "--"]);
  const clients: RawClient[] = [];
  try {
    const warning = await serve.waitForLog((l) => l.msg === "the open-file limit lowers the SMTP connection limit");
    expect(warning.max_clients).toBe(52);
    for (let i = 0; i < 250; i++) clients.push(await RawClient.connect(serve.smtpPort));
    const greetings = await Promise.all(clients.map((c) => c.reply(5000).catch(() => "no greeting")));
    const count = (re: RegExp): number => greetings.filter((g) => re.test(g)).length;
    expect(count(/^220 /)).toBe(52);
    expect(count(/^421 4\.7\.0 .*Too many connections/)).toBe(250 - 52);

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
