/**
 * A connection flood past the connection limit, from clients that do not close after the 421
 * (a bot that never reads, a scanner holding its sockets): the real `mailgw serve` under a low
 * open-file limit (prlimit --nofile=200, so 52 sessions). Each refused socket was kept open for a
 * second so the client could read its 421; a few hundred of them took every descriptor the
 * session limit had left free, accept() then failed with EMFILE in a loop (a core at 100%), and
 * the clients behind them waited in the listen backlog, seconds, for their reply. Now only a few
 * refused sockets linger at once; the rest are closed as soon as their 421 is written, so every
 * client gets its reply at once and the descriptors never run out.
 */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { RawClient, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { runServeOnce, serveDir, startServe } from "../smtp/serve-process.ts";

const FILE_LIMIT = 200;
const SESSIONS = 52; // (200 - 96) / 2, limits.ts maxClientsForFiles
const REFUSED = 320;

const openFds = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

test("a flood of clients that keep their sockets after the 421: every one is answered at once, descriptors never run out", async () => {
  if (spawnSync("prlimit", ["--version"]).status !== 0) {
    console.log("skipped: prlimit (util-linux) not installed");
    return;
  }
  const serve = await startServe("source", serveDir(), {}, 20_000, ["prlimit", `--nofile=${FILE_LIMIT}:${FILE_LIMIT}`, "--"]);
  const pid = serve.proc.pid;
  const clients: RawClient[] = [];
  let mostFds = 0;
  const sampler = setInterval(() => (mostFds = Math.max(mostFds, openFds(pid))), 20);
  try {
    expect((await serve.waitForLog((l) => l.msg === "the open-file limit lowers the SMTP connection limit")).max_clients).toBe(SESSIONS);
    for (let i = 0; i < SESSIONS; i++) clients.push(await RawClient.connect(serve.smtpPort));
    expect(await Promise.all(clients.map((c) => c.reply(5000)))).toEqual(Array(SESSIONS).fill("220 mx.test ESMTP"));

    const flood = await Promise.all(Array.from({ length: REFUSED }, () => RawClient.connect(serve.smtpPort, "127.0.0.1", undefined, undefined, true)));
    clients.push(...flood);
    const started = performance.now();
    const replies = await Promise.all(flood.map((c) => c.reply(10_000).catch(() => "no reply")));
    const waited = performance.now() - started;
    expect(replies.filter((r) => !/^421 4\.7\.0 .*Too many connections/.test(r))).toEqual([]);
    // Before: the 421s came a second apart in waves of the ~100 descriptors left (3-4 s).
    expect(waited).toBeLessThan(1500);
    expect(mostFds).toBeLessThan(FILE_LIMIT);

    // The admitted sessions still work: one of them stores a message.
    const c = clients[0];
    if (c === undefined) throw new Error("no session");
    expect(await c.cmd("EHLO client.example")).toMatch(/^250/);
    expect(await sendMail(c, "b@company.com", simpleMessage("after-the-flood"))).toMatch(/^250 2\.0\.0 Queued as /);
  } finally {
    clearInterval(sampler);
    for (const c of clients) c.end();
    expect(await serve.stop("SIGTERM")).toBe(0);
  }
}, 60_000);

// Under ~44 files serve died half started with Bun's own "ran out of file descriptors" (or an
// error naming a file it could not open); under 98 it started, and a session could take the
// descriptors its database and spool files needed.
test("an open-file limit too low to run: exit 1 with one line saying what it needs, before anything is opened", async () => {
  if (spawnSync("prlimit", ["--version"]).status !== 0) {
    console.log("skipped: prlimit (util-linux) not installed");
    return;
  }
  for (const limit of [20, 97]) {
    const dir = serveDir();
    const run = await runServeOnce("source", dir, {}, [], 15_000, ["prlimit", `--nofile=${limit}:${limit}`, "--"]);
    expect(run.exitCode).toBe(1);
    expect(run.stderr.trim()).toBe(
      `mailgw: the open-file limit (${limit}) is too low for mailgw serve: it needs at least 98 (96 for its database, logs, threads and DNS queries, ` +
        "2 per SMTP session); raise LimitNOFILE (systemd), --ulimit nofile (Docker) or ulimit -Hn",
    );
    expect(existsSync(join(dir, "data"))).toBe(false);
  }
  // 98 is enough: serve starts, with one session at a time (and says so).
  const serve = await startServe("source", serveDir(), {}, 20_000, ["prlimit", "--nofile=98:98", "--"]);
  try {
    expect((await serve.waitForLog((l) => l.msg === "the open-file limit lowers the SMTP connection limit")).max_clients).toBe(1);
  } finally {
    expect(await serve.stop("SIGTERM")).toBe(0);
  }
}, 60_000);
