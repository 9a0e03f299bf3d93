/**
 * Upgrading a live gateway (README "Upgrading"): the current compiled serve on the data dir and
 * database that an old executable left with mail waiting (test/fixtures/upgrade, made by
 * d80f148 at schema version 1; its README says how). Nothing may be lost or sent twice: held
 * forwards and the deferred webhook go out once the relay and the receiver are up, forwards
 * the old version delivered are not sent again, the failed one stays failed until `queue
 * retry`, the message accepted just before a kill -9 is finished, the archive stays intact and
 * retention still finds its old files, and /metrics never goes below the old totals (Prometheus
 * would take that for a counter reset).
 */
import { Database } from "bun:sqlite";
import { afterAll, expect, test } from "bun:test";
import { createServer } from "node:net";
import { cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { relayVars, startRelay, waitFor } from "../delivery/helpers.ts";
import { find, parseExposition, type Sample } from "../helpers/exposition.ts";
import { BARE_PATH } from "../packaging/binary.ts";
import { MIGRATIONS } from "../../src/store/migrations.ts";
import { archivedCopy, cleanupBinary, runServeOnce, serveCommand, serveDir, startServe, type QueueEntry } from "../smtp/serve-process.ts";

const FIXTURE = join(import.meta.dir, "../fixtures/upgrade");
const DAY_MS = 86_400_000;

afterAll(() => cleanupBinary(), 60_000);

/** The fixture in a fresh serve dir, its webhook URL (a port of the run that made it) replaced by `hookUrl`. */
function copyFixture(hookUrl: string): string {
  const dir = serveDir();
  const rules = readFileSync(join(FIXTURE, "rules.yaml"), "utf8");
  const oldUrl = /url: (\S+)/.exec(rules)?.[1] ?? "";
  expect(oldUrl).toStartWith("http://127.0.0.1:");
  writeFileSync(join(dir, "rules.yaml"), rules.replaceAll(oldUrl, hookUrl));
  for (const sub of ["spool", "archive"]) cpSync(join(FIXTURE, sub), join(dir, "data", sub), { recursive: true });
  const db = new Database(join(dir, "data", "mail-gateway.db"), { create: true });
  db.exec(readFileSync(join(FIXTURE, "mail-gateway.sql"), "utf8").replaceAll(oldUrl, hookUrl));
  db.close();
  return dir;
}

/** A webhook receiver whose answer the test sets; records the subjects of the posts it answered 200. */
function receiver(): { url: string; status: number; subjects: string[]; stop(): void } {
  const r = { url: "", status: 500, subjects: [] as string[], stop: () => undefined };
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      const post = (await req.json()) as { subject: string };
      if (r.status === 200) r.subjects.push(post.subject);
      return new Response("x", { status: r.status });
    },
  });
  r.url = `http://127.0.0.1:${server.port}/hook`;
  r.stop = () => void server.stop(true);
  return r;
}

async function mailgw(dir: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const bin = serveCommand("binary")[0] ?? "";
  const proc = Bun.spawn([bin, ...args], { cwd: dir, env: { PATH: BARE_PATH, HOME: dir, NO_COLOR: "1" }, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

async function queueList(dir: string, ...args: string[]): Promise<QueueEntry[]> {
  const r = await mailgw(dir, "queue", "list", "--json", ...args);
  expect(r.stderr).toBe("");
  return JSON.parse(r.stdout) as QueueEntry[];
}

/** Every counter-like series of `before` (totals, histogram buckets/sums/counts) is at least as high in `after`. */
function expectNoCounterWentBack(before: Sample[], after: Sample[]): void {
  const counters = before.filter((s) => /(_total|_bucket|_sum|_count)$/.test(s.name));
  expect(counters.length).toBeGreaterThan(20);
  for (const s of counters) expect({ series: s.name, labels: s.labels, atLeast: (find(after, s.name, s.labels) ?? -1) >= s.value }).toEqual({ series: s.name, labels: s.labels, atLeast: true });
}

async function metrics(httpUrl: string): Promise<Sample[]> {
  return parseExposition(await (await fetch(`${httpUrl}metrics`)).text()).samples;
}

test("the current serve takes over an old gateway's data dir: nothing lost, nothing sent twice, counters kept", async () => {
  const hook = receiver();
  const relay = await startRelay();
  const dir = copyFixture(hook.url);
  const fixtureDb = new Database(join(dir, "data", "mail-gateway.db"), { readonly: true });
  const messageId = (subject: string) => fixtureDb.query<{ id: string }, [string]>("SELECT id FROM messages WHERE subject = ?").get(subject)?.id ?? "";
  const killed = messageId("archive killed");
  const failed = messageId("failme old");
  const webhook = messageId("hook ticket 1");
  const newest = fixtureDb.query<{ at: number }, []>("SELECT max(received_at) AS at FROM messages").get()?.at ?? 0;
  fixtureDb.close();
  const oldArchive = readdirSync(join(FIXTURE, "archive")).sort();
  expect(oldArchive).toHaveLength(2); // 40 days apart
  const oldMetrics = parseExposition(readFileSync(join(FIXTURE, "metrics-before.txt"), "utf8")).samples;

  try {
    // 1. No relay yet, the receiver answering 500: the old queue as the old version left it.
    let serve = await startServe("binary", dir, {});
    try {
      // The log says the database was upgraded, and that the old executable cannot go back to it.
      const upgraded = await serve.waitForLog((l) => l.msg === "database schema upgraded");
      expect(upgraded).toMatchObject({ from_version: 1, to_version: MIGRATIONS.at(-1)?.version });
      expect(String(upgraded.hint)).toContain("restore");
      const recovered = await serve.waitForLog((l) => l.msg === "spool recovered");
      expect(recovered.finished).toBe(1); // accepted just before the kill -9: finished now
      expect(await archivedCopy(dir, killed)).not.toBeNull();
      for (const day of oldArchive) {
        for (const f of readdirSync(join(FIXTURE, "archive", day))) {
          expect(readFileSync(join(dir, "data", "archive", day, f))).toEqual(readFileSync(join(FIXTURE, "archive", day, f)));
        }
      }
      const entries = await queueList(dir);
      const states = entries.map((e) => `${e.kind} ${e.state}`).sort();
      expect(states).toEqual(["forward failed", ...Array(5).fill("forward held"), "webhook deferred"]);
      expect(entries.find((e) => e.id === failed)?.lastError).toContain("550 5.1.1");
      expectNoCounterWentBack(oldMetrics, await metrics(serve.httpUrl));
    } finally {
      expect(await serve.stop()).toBe(0);
    }

    // 2. Relay and receiver up, retention on: waiting mail goes out once, old archive days go.
    const keepDays = Math.ceil((Date.now() - newest) / DAY_MS) + 20;
    relay.refuseRecipients = ["fail@forward.example"];
    hook.status = 200;
    serve = await startServe("binary", dir, { ...relayVars(relay), ARCHIVE_MAX_AGE_DAYS: String(keepDays) });
    try {
      expect(serve.logs.filter((l) => l.msg === "database schema upgraded")).toEqual([]); // once only
      const waiting = ["fwd held 1", "fwd waiting 1", "fwd waiting 2", "keep held 1", "keep waiting 1"];
      await waitFor(() => relay.received.length >= waiting.length, 20_000, "waiting forwards delivered");
      // The webhook's next attempt is minutes away (phase 1 got a 500): the admin retries it.
      expect(await mailgw(dir, "queue", "retry", webhook)).toMatchObject({ code: 0, stderr: "" });
      await waitFor(() => hook.subjects.length >= 1, 10_000, "webhook posted");
      await Bun.sleep(500); // a second copy would come now
      const subjects = relay.received.map((m) => /^Subject: (.*)$/m.exec(m.data.toString("latin1"))?.[1]).sort();
      expect(subjects).toEqual(waiting); // "fwd delivered old" and "keep delivered old" not again
      expect(hook.subjects).toEqual(["hook ticket 1"]);
      expect((await queueList(dir)).map((e) => [e.id, e.state])).toEqual([[failed, "failed"]]);

      const pruned = await serve.waitForLog((l) => l.msg === "archive retention pruned");
      expect(pruned.files_deleted).toBe(3);
      expect(existsSync(join(dir, "data", "archive", oldArchive[0] ?? ""))).toBe(false);
      // The killed message's copy may already be there (linked before the kill, row not yet done).
      expect(readdirSync(join(dir, "data", "archive", oldArchive[1] ?? "")).sort()).toEqual(
        [...new Set([...readdirSync(join(FIXTURE, "archive", oldArchive[1] ?? "")), `${killed}.eml`])].sort(),
      );

      // The failed forward: `queue retry` sends it once the relay takes it.
      relay.refuseRecipients = [];
      const retried = await mailgw(dir, "queue", "retry", failed);
      expect(retried).toMatchObject({ code: 0, stderr: "" });
      await waitFor(() => relay.received.length === waiting.length + 1, 10_000, "retried forward delivered");
      expect(relay.received.at(-1)?.to).toEqual(["fail@forward.example"]);
      await waitFor(() => readdirSync(join(dir, "data", "spool")).every((f) => !f.endsWith(".eml")), 10_000, "spool emptied");
      expect(await queueList(dir)).toEqual([]);
      expectNoCounterWentBack(oldMetrics, await metrics(serve.httpUrl));
    } finally {
      expect(await serve.stop()).toBe(0);
    }
  } finally {
    await relay.close();
    hook.stop();
  }
}, 90_000);

/**
 * An old serve still running (a new one started by hand before the service was stopped) holds no
 * DATA_DIR lock: versions before 33efcf3 took none. Its SMTP port is the only sign of it, and a
 * start that first migrated the database and ran recovery and the delivery worker (re-sending
 * the old serve's deliveries in flight) only then failed on that port. A plain listener stands
 * for the old serve here.
 */
test("a serve whose SMTP port is taken changes nothing in the data dir: no migration, no recovery", async () => {
  const dir = copyFixture("http://127.0.0.1:9/hook");
  const oldServe = createServer().listen(0, "127.0.0.1");
  await new Promise((resolve) => oldServe.once("listening", resolve));
  const port = (oldServe.address() as { port: number }).port;
  const dbFile = join(dir, "data", "mail-gateway.db");
  const snapshot = () => {
    const db = new Database(dbFile, { readonly: true });
    try {
      return {
        version: db.query<{ user_version: number }, []>("PRAGMA user_version").get()?.user_version,
        messages: db.query("SELECT id, status, archive_path FROM messages ORDER BY id").all(),
        deliveries: db.query("SELECT id, state, attempts, next_attempt_at FROM deliveries ORDER BY id").all(),
        spool: readdirSync(join(dir, "data", "spool")).sort(),
      };
    } finally {
      db.close();
    }
  };
  const before = snapshot();
  try {
    const r = await runServeOnce("binary", dir, { SMTP_HOST: "127.0.0.1", SMTP_PORT: String(port), HTTP_HOST: "127.0.0.1", HTTP_PORT: "0" });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`SMTP_PORT=${port}: EADDRINUSE`);
    expect(r.stdout).not.toContain("database schema upgraded");
    expect(snapshot()).toEqual(before);
    expect(before.version).toBe(1);
  } finally {
    oldServe.close();
  }
});

/** A wrong DATA_DIR is refused (data-dir-access.ts); the database must keep its old schema then, or the old executable could not go back to it. */
test("a start refused for a DATA_DIR without spool/ leaves an old database's schema as it was", async () => {
  const dir = copyFixture("http://127.0.0.1:9/hook");
  const r = await runServeOnce("binary", dir, { DATA_DIR: join(dir, "elsewhere"), DATABASE_URL: `file:${join(dir, "data", "mail-gateway.db")}` });
  expect(r.exitCode).toBe(1);
  expect(r.stderr).toContain("has no spool directory");
  const db = new Database(join(dir, "data", "mail-gateway.db"), { readonly: true });
  expect(db.query<{ user_version: number }, []>("PRAGMA user_version").get()?.user_version).toBe(1);
  db.close();
});
