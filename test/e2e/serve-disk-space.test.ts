/**
 * Free disk space (store/free-space.ts), through the real `mailgw serve` with DATA_DIR on a small
 * tmpfs: a MAIL FROM whose declared SIZE= does not fit gets Postfix's `452 4.3.1 Insufficient
 * system storage` before a byte of the message is sent, and nothing is stored; a message without
 * SIZE= still goes to DATA (250 when it fits, 451 4.3.0 when storing fails: SPEC §4); /healthz
 * stays 200 with a warning (and the stats page shows it) while the disk has less than 1.5× the
 * message size limit free, and the log says so once, and once when it recovers. Needs root
 * (mount); skips with a printed reason otherwise.
 */
import { expect, test } from "bun:test";
import { mkdirSync, readdirSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { StatsSnapshot } from "../../src/http/stats-data.ts";
import { fillUntil, withTmpfs } from "../helpers/tmpfs.ts";
import { RawClient, greet, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";

const LOW = "free disk space low";
const RECOVERED = "free disk space recovered";
const STORAGE_452 = "452 4.3.1 Insufficient system storage";

async function healthz(serve: ServeProcess): Promise<{ status: number; warnings: string[] }> {
  const r = await fetch(`${serve.httpUrl}/healthz`);
  return { status: r.status, warnings: ((await r.json()) as { warnings: string[] }).warnings.filter((w) => w.includes("disk")) };
}

async function until<T>(what: string, get: () => Promise<T | null>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`not seen in ${ms} ms: ${what}`);
    await Bun.sleep(100);
  }
}

const spoolFiles = (mnt: string): string[] => readdirSync(join(mnt, "spool")).filter((f) => f !== "orphaned");

test("a declared SIZE= that does not fit: 452 4.3.1 at MAIL, nothing stored; without SIZE= 250; /healthz 200 with a warning, logged once, until space is freed", () =>
  withTmpfs("mailgw-space-", 8, async (mnt) => {
    const dir = serveDir();
    // The database off the tmpfs: the spool's file system is the one that runs low.
    const filler = fillUntil(mnt, 1.5 * 1024 * 1024);
    const serve = await startServe("source", dir, { DATA_DIR: mnt, DATABASE_URL: `file:${join(dir, "db", "mail-gateway.db")}`, MAX_MESSAGE_SIZE_MB: "2" });
    try {
      const low = await serve.waitForLog((l) => l.msg === LOW);
      expect(low.level).toBe("warn");
      const c = await RawClient.connect(serve.smtpPort);
      await greet(c);
      // Over MAX_MESSAGE_SIZE_MB is still 552 (checked first, permanent).
      expect(await c.cmd("MAIL FROM:<a@sender.example> SIZE=3000000")).toStartWith("552 5.3.4");
      // 1 MB and the reserve do not fit in ~1.5 MB: refused before the client sends it.
      expect(await c.cmd("MAIL FROM:<a@sender.example> SIZE=1000000")).toBe(STORAGE_452);
      expect(await c.cmd("RCPT TO:<b@company.com>")).toStartWith("503"); // no transaction was started
      expect(spoolFiles(mnt)).toEqual([]);
      // A small declared size fits; a message without SIZE= goes on to DATA and is stored.
      expect(await c.cmd("MAIL FROM:<a@sender.example> SIZE=2000")).toStartWith("250");
      expect(await c.cmd("RSET")).toStartWith("250");
      expect(await sendMail(c, "b@company.com", simpleMessage("small"))).toStartWith("250 2.0.0 Queued as ");
      await c.cmd("QUIT");

      // A session refused at MAIL: its line has the sender and the 452, as other refusals.
      const other = await RawClient.connect(serve.smtpPort);
      await greet(other);
      expect(await other.cmd("MAIL FROM:<late@sender.example> SIZE=1500000")).toBe(STORAGE_452);
      await other.cmd("QUIT");
      const line = await serve.waitForLog((l) => l.msg === "smtp session" && l.from === "late@sender.example");
      expect(line.reply).toBe(STORAGE_452);

      // Mail still flows: 200, with the warning (no path in it).
      const health = await healthz(serve);
      expect(health.status).toBe(200);
      expect(health.warnings).toHaveLength(1);
      expect(health.warnings[0]).toMatch(/^the data dir's disk has 1\.\d MB free, less than 1\.5× the 2 MB message size limit: larger messages get 452 when their size is declared, else 451$/);
      expect(health.warnings[0]).not.toContain(mnt);
      // The stats page and stats.json say it too; the refusals are counted.
      const stats = await until("refusals counted", async () => {
        const s = (await (await fetch(`${serve.httpUrl}/stats.json`)).json()) as StatsSnapshot;
        return s.totals.today.refused.insufficient_storage === 2 ? s : null;
      });
      expect(stats.storage.warnings).toEqual(health.warnings);
      const page = await (await fetch(`${serve.httpUrl}/stats`)).text();
      expect(page).toContain("The data dir&#39;s disk has 1.");
      expect(page).toContain('data-refused="insufficient_storage"');

      // Read every second, said once.
      await Bun.sleep(2500);
      expect(serve.logs.filter((l) => l.msg === LOW)).toHaveLength(1);

      // Space freed: an info line, no warning, the declared size fits again.
      rmSync(filler);
      const recovered = await serve.waitForLog((l) => l.msg === RECOVERED);
      expect(recovered.level).toBe("info");
      expect(await healthz(serve)).toEqual({ status: 200, warnings: [] });
      expect((await (await fetch(`${serve.httpUrl}/stats.json`)).json() as StatsSnapshot).storage.warnings).toEqual([]);
      const again = await RawClient.connect(serve.smtpPort);
      await greet(again);
      expect(await again.cmd("MAIL FROM:<a@sender.example> SIZE=1000000")).toStartWith("250");
      await again.cmd("QUIT");
      expect(serve.logs.filter((l) => l.msg === LOW || l.msg === RECOVERED)).toHaveLength(2);
    } finally {
      expect(await serve.stop("SIGTERM")).toBe(0);
    }
  }), 60_000);

test("a full disk without SIZE= is still 451 4.3.0 after DATA (SPEC §4); with SIZE= it is 452 4.3.1 at MAIL", () =>
  withTmpfs("mailgw-space-full-", 2, async (mnt) => {
    const dir = serveDir();
    const serve = await startServe("source", dir, { DATA_DIR: mnt, DATABASE_URL: `file:${join(dir, "db", "mail-gateway.db")}` });
    try {
      fillUntil(mnt, 100 * 1024);
      const body = `${"x".repeat(76)}\r\n`.repeat(5000); // ~390 KB
      const c = await RawClient.connect(serve.smtpPort);
      await greet(c);
      expect(await sendMail(c, "b@company.com", simpleMessage("no-size", body))).toMatch(/^451 4\.3\.0 /);
      // Once a reading (one a second) has seen the filler, a declared size is refused at MAIL.
      await until("452 at MAIL", async () => {
        const reply = await c.cmd("MAIL FROM:<a@sender.example> SIZE=400000");
        if (reply === STORAGE_452) return reply;
        expect(reply).toStartWith("250");
        expect(await c.cmd("RSET")).toStartWith("250");
        return null;
      });
      expect(spoolFiles(mnt)).toEqual([]);
      c.end();
      // A 2 MB tmpfs is below 1.5× the default 25 MB from the start: one warning, still 200.
      const health = await healthz(serve);
      expect(health.status).toBe(200);
      expect(health.warnings).toHaveLength(1);
      expect(serve.logs.filter((l) => l.msg === LOW)).toHaveLength(1);
    } finally {
      expect(await serve.stop("SIGTERM")).toBe(0);
    }
  }), 60_000);

test("a disk running out of inodes with megabytes free: /healthz 200 with the inode warning, logged once, cleared when files are removed", () =>
  withTmpfs(
    "mailgw-inodes-",
    16,
    async (mnt) => {
      const dir = serveDir();
      const serve = await startServe("source", dir, { DATA_DIR: mnt, DATABASE_URL: `file:${join(dir, "db", "mail-gateway.db")}`, MAX_MESSAGE_SIZE_MB: "1" });
      try {
        expect((await healthz(serve)).warnings).toEqual([]);
        // 1,000 inodes, 5% = 50: use all but ~20 of them, as an archive of small messages does.
        const fillers = join(mnt, "fillers");
        mkdirSync(fillers);
        for (let i = 0; statfsSync(mnt).ffree > 20; i++) writeFileSync(join(fillers, String(i)), "x");
        const low = await serve.waitForLog((l) => l.msg === "free inodes low");
        expect(low.level).toBe("warn");
        const health = await healthz(serve);
        expect(health.status).toBe(200);
        expect(health.warnings).toHaveLength(1);
        expect(health.warnings[0]).toMatch(/^the data dir's disk has \d+ free inodes left \(each stored message is a file\): when none are left, every message gets 451$/);
        expect(statfsSync(mnt).bavail * statfsSync(mnt).bsize).toBeGreaterThan(10 * 1024 * 1024); // bytes were never short
        await Bun.sleep(2500);
        expect(serve.logs.filter((l) => l.msg === "free inodes low")).toHaveLength(1);
        rmSync(fillers, { recursive: true });
        expect((await serve.waitForLog((l) => l.msg === "free inodes recovered")).level).toBe("info");
        expect(await healthz(serve)).toEqual({ status: 200, warnings: [] });
      } finally {
        expect(await serve.stop("SIGTERM")).toBe(0);
      }
    },
    "nr_inodes=1000",
  ), 60_000);
