/**
 * `mailgw queue list|retry|drop` as subprocesses (`bun src/main.ts queue ...`) on a data dir
 * that a running delivery worker (in this process, as inside serve) uses at the same time.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { chmodSync, existsSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { silentLogger } from "../../src/log/logger.ts";
import type { ListedEntry } from "../../src/queue/queue-admin.ts";
import { createDeliveryWorker } from "../../src/queue/worker.ts";
import { MIGRATIONS } from "../../src/store/migrations.ts";
import { deliveryOf, makeEnv, relayVars, seedDelivery, startRelay, waitFor, type TestEnv } from "../delivery/helpers.ts";

const ROOT = resolve(import.meta.dir, "../..");
const BUN = process.execPath;

function mailgw(t: TestEnv, ...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = Bun.spawnSync([BUN, join(ROOT, "src/main.ts"), "queue", ...args], {
    cwd: t.dir,
    env: { PATH: process.env.PATH ?? "", HOME: t.dir, DATA_DIR: t.dataDir, DATABASE_URL: `file:${t.dbPath}`, NO_COLOR: "1" },
  });
  return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

describe("mailgw queue", () => {
  test("list (table and --json), --state filter, empty queue", () => {
    const t = makeEnv();
    expect(mailgw(t, "list").stdout).toBe("queue is empty\n");
    const a = seedDelivery(t, { target: ["sales@company.com"] });
    const b = seedDelivery(t, { kind: "webhook", target: "https://erp.example/inbound", state: "failed" });
    t.db.query(`UPDATE deliveries SET last_error = '550 5.1.1 no such user', attempts = 3 WHERE message_id = ?`).run(b);
    const table = mailgw(t, "list");
    expect(table.code).toBe(0);
    expect(table.stdout).toContain(a);
    expect(table.stdout).toContain(b);
    expect(table.stdout).toContain("550 5.1.1 no such user");
    expect(table.stdout).toMatch(/ID\s+#\s+STATE\s+KIND\s+AGE\s+ATTEMPTS\s+NEXT TRY\s+TARGET\s+LAST ERROR/);
    const json = JSON.parse(mailgw(t, "list", "--json").stdout) as ListedEntry[];
    expect(json.map((e) => e.id).sort()).toEqual([a, b].sort());
    // A queued row says when it is due (an ISO time, as deferred ones); a failed one has none.
    expect(json.find((e) => e.id === a)?.nextAttemptAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(json.find((e) => e.id === b)?.nextAttemptAt).toBeNull();
    const failed = JSON.parse(mailgw(t, "list", "--json", "--state", "Failed").stdout) as ListedEntry[];
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ id: b, state: "failed", kind: "webhook", attempts: 3, target: "https://erp.example/inbound", lastError: "550 5.1.1 no such user" });
    const bad = mailgw(t, "list", "--state", "bogus");
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("--state=bogus");
  }, 30_000);

  test("--data-dir alone, or --env-file, finds the database, from any directory", () => {
    const t = makeEnv();
    const id = seedDelivery(t, { target: ["sales@company.com"] });
    const r = Bun.spawnSync([BUN, join(ROOT, "src/main.ts"), "queue", "list", "--data-dir", t.dataDir], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", HOME: t.dir, NO_COLOR: "1" },
    });
    expect(r.stderr.toString()).toBe("");
    expect(r.exitCode).toBe(0);
    expect(r.stdout.toString()).toContain(id);
    // The env file serve runs with (systemd's EnvironmentFile, `serve --env-file`).
    writeFileSync(join(t.dir, "mailgw.env"), `DATA_DIR=${t.dataDir}\n`);
    const viaFile = Bun.spawnSync([BUN, join(ROOT, "src/main.ts"), "queue", "list", "--env-file", join(t.dir, "mailgw.env")], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", HOME: t.dir, NO_COLOR: "1" },
    });
    expect(viaFile.exitCode).toBe(0);
    expect(viaFile.stdout.toString()).toContain(id);
  }, 30_000);

  // When a reload refused a bad setting, serve runs on with the old one: the queue must stay readable.
  test("a bad non-storage setting (RELAY_SMTP_SECURE=bogus in the env file) does not stop queue list", () => {
    const t = makeEnv();
    const id = seedDelivery(t, { target: ["sales@company.com"] });
    writeFileSync(join(t.dir, "bad.env"), `DATA_DIR=${t.dataDir}\nRELAY_SMTP_HOST=smtp.example.com\nRELAY_SMTP_SECURE=bogus\nRATE_LIMIT_MAX=lots\n`);
    const r = Bun.spawnSync([BUN, join(ROOT, "src/main.ts"), "queue", "list", "--env-file", join(t.dir, "bad.env")], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", HOME: t.dir, NO_COLOR: "1" },
    });
    expect(r.stderr.toString()).toBe("");
    expect(r.exitCode).toBe(0);
    expect(r.stdout.toString()).toContain(id);
  }, 30_000);

  test("list shows a webhook URL without its credentials or query string (table and --json)", () => {
    const t = makeEnv();
    seedDelivery(t, { kind: "webhook", target: "https://hook:pa55word@erp.example/inbound?token=S3CRET-TOKEN", state: "failed" });
    for (const out of [mailgw(t, "list").stdout, mailgw(t, "list", "--json").stdout]) {
      expect(out).toContain("https://erp.example/inbound?…");
      expect(out).not.toContain("S3CRET-TOKEN");
      expect(out).not.toContain("pa55word");
    }
  }, 30_000);

  test("list shows held forwards by default; drop of one of a message's two deliveries keeps the file the other needs", () => {
    const t = makeEnv();
    const held = seedDelivery(t, { state: "held" });
    expect((JSON.parse(mailgw(t, "list", "--json").stdout) as ListedEntry[]).map((e) => [e.id, e.state])).toEqual([[held, "held"]]);
    expect(mailgw(t, "list").stdout).toContain(`${held}  1  held`);
    // The same message also waits for a webhook post: dropping the forward must not take its bytes.
    t.db.query(`INSERT INTO deliveries (message_id, kind, target, rule, category, state, attempts, created_at, next_attempt_at, updated_at)
      SELECT message_id, 'webhook', 'https://erp.example/in', rule, category, 'queued', 0, created_at, next_attempt_at, updated_at FROM deliveries WHERE message_id = ?`).run(held);
    expect(mailgw(t, "drop", `${held}#1`)).toMatchObject({ code: 0, stdout: "1 delivery dropped\n" });
    expect(existsSync(join(t.dataDir, "spool", `${held}.eml`))).toBe(true);
    expect(mailgw(t, "drop", `${held}#2`)).toMatchObject({ code: 0, stdout: "1 delivery dropped\n" });
    expect(existsSync(join(t.dataDir, "spool", `${held}.eml`))).toBe(false);
  }, 30_000);

  test("retry of a held forward says it stays held until serve has a relay", () => {
    const t = makeEnv();
    const held = seedDelivery(t, { state: "held" });
    const failed = seedDelivery(t, { state: "failed" });
    const one = mailgw(t, "retry", held);
    expect(one.code).toBe(0);
    expect(one.stdout).toBe("1 delivery queued for a new attempt\nnote: 1 of them was a forward held for want of a relay: serve holds it again until RELAY_SMTP_HOST is set (restart it, or SIGHUP with .env / --env-file)\n");
    t.db.query(`UPDATE deliveries SET state = 'held'`).run();
    expect(mailgw(t, "retry", "--all").stdout).toContain("2 deliveries queued for a new attempt\nnote: 2 of them were forwards held");
    t.db.query(`UPDATE deliveries SET state = 'failed' WHERE message_id = ?`).run(failed);
    expect(mailgw(t, "retry", failed).stdout).toBe("1 delivery queued for a new attempt\n");
  }, 30_000);

  test("drop by message id leaves a delivered delivery (and its history) alone", () => {
    const t = makeEnv();
    const id = seedDelivery(t, { state: "failed" });
    t.db.query(`INSERT INTO deliveries (message_id, kind, target, rule, category, state, attempts, created_at, next_attempt_at, updated_at)
      SELECT message_id, 'webhook', 'https://erp.example/in', rule, category, 'delivered', 1, created_at, next_attempt_at, updated_at FROM deliveries WHERE message_id = ?`).run(id);
    const dropped = mailgw(t, "drop", id);
    expect(dropped.stdout).toBe("1 delivery dropped\n");
    expect(t.db.query(`SELECT state FROM deliveries WHERE message_id = ?`).all(id)).toEqual([{ state: "delivered" }]);
    const again = mailgw(t, "drop", id);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`mailgw: delivery ${id} was delivered: nothing to drop\n`);
  }, 30_000);

  test("retry and drop while a worker (as in serve) runs on the same data dir", async () => {
    const relay = await startRelay();
    cleanups.push(() => relay.close());
    relay.mode = "permfail";
    const t = makeEnv(relayVars(relay));
    const worker = createDeliveryWorker({ config: t.config, db: t.db, logger: silentLogger, pollIntervalMs: 100 });
    cleanups.push(() => worker.stop());
    const ids = [seedDelivery(t), seedDelivery(t), seedDelivery(t)];
    worker.start();
    await waitFor(() => ids.every((id) => deliveryOf(t.db, id).state === "failed"), 10_000, "failed");
    expect(mailgw(t, "list", "--state", "failed").stdout).toContain("550");

    relay.mode = "ok";
    const one = mailgw(t, "retry", ids[0]!);
    expect(one).toMatchObject({ code: 0, stdout: "1 delivery queued for a new attempt\n" });
    await waitFor(() => deliveryOf(t.db, ids[0]!).state === "delivered", 10_000, "retried one delivered");
    expect(deliveryOf(t.db, ids[1]!).state).toBe("failed");

    const again = mailgw(t, "retry", ids[0]!);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("delivered");

    const dropped = mailgw(t, "drop", ids[1]!);
    expect(dropped).toMatchObject({ code: 0, stdout: "1 delivery dropped\n" });
    expect(existsSync(join(t.dataDir, "spool", `${ids[1]}.eml`))).toBe(false);
    expect(mailgw(t, "list", "--json").stdout).not.toContain(ids[1]!);

    const all = mailgw(t, "retry", "--all");
    expect(all.stdout).toBe("1 delivery queued for a new attempt\n");
    await waitFor(() => deliveryOf(t.db, ids[2]!).state === "delivered", 10_000, "retry --all delivered");
    expect(relay.received).toHaveLength(2);
  }, 30_000);

  test("drop of a delivery being attempted right now says the relay may still receive it", async () => {
    const relay = await startRelay();
    cleanups.push(() => relay.close());
    relay.mode = "stall";
    const t = makeEnv(relayVars(relay));
    const worker = createDeliveryWorker({ config: t.config, db: t.db, logger: silentLogger, pollIntervalMs: 100 });
    cleanups.push(() => worker.stop());
    const id = seedDelivery(t);
    worker.start();
    await waitFor(() => deliveryOf(t.db, id).state === "delivering", 10_000, "delivering");
    const dropped = mailgw(t, "drop", id);
    expect(dropped.code).toBe(0);
    expect(dropped.stdout).toBe("1 delivery dropped\nit was being delivered: the relay or webhook may still receive it (the attempt under way is not recalled); no further attempt will be made\n");
    await worker.stop(); // here, not in afterEach: it waits out the stalled attempt's grace (10 s)
  }, 30_000);

  test("a write lock held by another process past the busy timeout: one line naming the file, nothing changed", () => {
    const t = makeEnv();
    const id = seedDelivery(t, { state: "failed" });
    const other = new Database(t.dbPath);
    other.run("BEGIN IMMEDIATE");
    try {
      for (const args of [["retry", "--all"], ["drop", id]]) {
        const r = mailgw(t, ...args);
        expect(r.code).toBe(1);
        expect(r.stderr).toBe(`mailgw: ${t.dbPath} stayed locked for writing by another process (a sqlite3 shell or a backup inside a transaction?): nothing was changed; end that transaction and run the command again\n`);
      }
    } finally {
      other.run("COMMIT");
      other.close();
    }
    expect(deliveryOf(t.db, id).state).toBe("failed");
  }, 30_000);

  test("errors: unknown id, missing argument, no database → exit 1 with one line", () => {
    const t = makeEnv();
    const unknown = mailgw(t, "retry", "01aaaaaaaaaaaaaaaaaaaaaaaa");
    expect(unknown.code).toBe(1);
    expect(unknown.stderr.trim().split("\n")).toHaveLength(1);
    expect(unknown.stderr).toContain("no delivery");
    const neither = mailgw(t, "retry");
    expect(neither.code).toBe(1);
    expect(neither.stderr).toContain("--all");
    const dropUnknown = mailgw(t, "drop", "42");
    expect(dropUnknown.code).toBe(1);
    const r = Bun.spawnSync([BUN, join(ROOT, "src/main.ts"), "queue", "list"], {
      cwd: t.dir,
      env: { PATH: process.env.PATH ?? "", DATABASE_URL: `file:${join(t.dir, "nope", "x.db")}`, DATA_DIR: t.dataDir },
    });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toContain("no database");
    // A file where a directory of the path should be is a wrong path, not a permission problem.
    const throughFile = Bun.spawnSync([BUN, join(ROOT, "src/main.ts"), "queue", "list"], {
      cwd: t.dir,
      env: { PATH: process.env.PATH ?? "", DATABASE_URL: `file:${join(t.dbPath, "x.db")}`, DATA_DIR: t.dataDir },
    });
    expect(throughFile.exitCode).toBe(1);
    expect(throughFile.stderr.toString()).toBe(
      `mailgw: no database at ${join(t.dbPath, "x.db")}: a part of that path is a file, not a directory; check --data-dir, --database-url or the --env-file's DATA_DIR/DATABASE_URL\n`,
    );
    // A database it may not open is not "no database": the user is wrong. Root reads any file, so
    // the command runs without CAP_DAC_OVERRIDE (setpriv, util-linux) against a mode-000 file.
    if (process.getuid?.() !== 0 || Bun.which("setpriv") === null) {
      console.log("skipped the EACCES case: needs root and setpriv to drop CAP_DAC_OVERRIDE");
    } else {
      chmodSync(t.dbPath, 0o000);
      try {
        const denied = Bun.spawnSync(["setpriv", "--bounding-set", "-dac_override,-dac_read_search", BUN, join(ROOT, "src/main.ts"), "queue", "list"], {
          cwd: t.dir,
          env: { PATH: process.env.PATH ?? "", DATABASE_URL: `file:${t.dbPath}`, DATA_DIR: t.dataDir },
        });
        expect(denied.exitCode).toBe(1);
        expect(denied.stderr.toString()).toBe(`mailgw: cannot open ${t.dbPath} (EACCES): run mailgw queue as the user serve runs as (README: systemd)\n`);
      } finally {
        chmodSync(t.dbPath, 0o600);
      }
    }
  }, 30_000);

  test("a database of an older schema (serve not yet restarted after an upgrade) is refused, not upgraded under it", () => {
    const t = makeEnv();
    const dbPath = join(t.dir, "old.db");
    const old = new Database(dbPath, { create: true });
    const latest = MIGRATIONS.at(-1)?.version ?? 0;
    for (const m of MIGRATIONS.slice(0, -1)) old.exec(m.sql);
    old.exec(`PRAGMA user_version = ${latest - 1}`);
    old.close();
    const r = Bun.spawnSync([BUN, join(ROOT, "src/main.ts"), "queue", "list", "--database-url", `file:${dbPath}`], { cwd: t.dir, env: { PATH: process.env.PATH ?? "", HOME: t.dir, NO_COLOR: "1" } });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toBe(
      `mailgw: database ${dbPath} has schema version ${latest - 1}, older than this mailgw (${latest}): use the mailgw that serve runs, or restart serve with this one (its start upgrades the database)\n`,
    );
    const after = new Database(dbPath, { readonly: true });
    expect(after.query<{ user_version: number }, []>("PRAGMA user_version").get()?.user_version).toBe(latest - 1);
    after.close();
  }, 30_000);
});
