/**
 * Descriptors and SPF/DKIM/DMARC: the real `mailgw serve` under a 200-file limit (prlimit), with
 * rules on `spf` and a name server that never answers (a silent UDP socket on 127.0.0.153:53,
 * put in /etc/resolv.conf for serve alone by a private mount namespace). Every session the
 * connection limit admits sends a message at once: each is stored (250). Each TXT query held a
 * socket of its own for as long as the server stayed silent: 68 sessions' sockets, their
 * queries and, at the end of DATA, their spool files passed 200, and messages got 451.
 * Needs root (unshare -m, mount --bind, port 53): skipped otherwise.
 */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { createSocket } from "node:dgram";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { RawClient, greet, simpleMessage, terminated } from "../smtp/helpers.ts";
import { archivedCopy, serveDir, startServe } from "../smtp/serve-process.ts";

const SILENT_NAME_SERVER = "127.0.0.153";

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - name: spf-fail
    priority: 10
    action: reject
    conditions:
      - { field: spf, operator: equals, value: fail }
`;

function privateMountsAllowed(): boolean {
  if (spawnSync("prlimit", ["--version"]).status !== 0) return false;
  return spawnSync("unshare", ["-m", "sh", "-c", "mount --bind /etc/hostname /etc/hostname"]).status === 0;
}

test("a silent name server and every admitted session sending at once: all stored, none 451 for want of a descriptor", async () => {
  if (!privateMountsAllowed()) {
    console.log("skipped: needs prlimit, unshare -m and mount --bind (root)");
    return;
  }
  const silent = createSocket("udp4");
  try {
    await new Promise<void>((resolve, reject) => {
      silent.once("error", reject);
      silent.bind(53, SILENT_NAME_SERVER, () => resolve());
    });
  } catch (err) {
    console.log(`skipped: cannot bind ${SILENT_NAME_SERVER}:53 (${String(err)})`);
    return;
  }
  silent.on("message", () => {}); // read and never answered
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), RULES);
  const resolvConf = join(dir, "resolv.conf");
  writeFileSync(resolvConf, `nameserver ${SILENT_NAME_SERVER}\n`);
  const prefix = ["unshare", "-m", "sh", "-c", `mount --bind '${resolvConf}' /etc/resolv.conf && exec "$@"`, "sh", "prlimit", "--nofile=200:200", "--"];
  const serve = await startServe("source", dir, { RATE_LIMIT_MAX: "100000" }, 20_000, prefix);
  const clients: RawClient[] = [];
  try {
    const sessions = Number((await serve.waitForLog((l) => l.msg === "the open-file limit lowers the SMTP connection limit")).max_clients);
    for (let i = 0; i < sessions; i++) {
      const c = await RawClient.connect(serve.smtpPort);
      clients.push(c);
      await greet(c);
      expect(await c.cmd("MAIL FROM:<a@sender.example>")).toMatch(/^250/);
      expect(await c.cmd("RCPT TO:<b@company.com>")).toMatch(/^250/);
      expect(await c.cmd("DATA")).toMatch(/^354/);
    }
    // Over 64 KB: each is written to its spool file as it arrives.
    const body = `${"y".repeat(76)}\r\n`.repeat(1300);
    for (const [i, c] of clients.entries()) c.write(terminated(simpleMessage(`dns-${i}`, body)));
    const replies = await Promise.all(clients.map((c) => c.reply(30_000)));
    expect(replies.filter((r) => !r.startsWith("250 2.0.0 Queued as "))).toEqual([]);
    const id = /Queued as (\S+)/.exec(replies[0] ?? "")?.[1] ?? "";
    expect((await archivedCopy(dir, id))?.toString("latin1")).toContain("Subject: dns-0\r\n");
    expect(serve.logs.filter((l) => JSON.stringify(l).includes("EMFILE"))).toEqual([]);
  } finally {
    for (const c of clients) c.end();
    silent.close();
    expect(await serve.stop("SIGTERM")).toBe(0);
  }
}, 60_000);
