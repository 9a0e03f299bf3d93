/**
 * Storage failures must answer 451 4.3.0 and leave nothing half-written: no spool file, no
 * temporary file, no message row — and the pipeline keeps working once storage is back.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { SmtpError } from "../../src/errors.ts";
import { envelope, listFiles, makeHarness, message, type Harness } from "./helpers.ts";
import { withTmpfs } from "../helpers/tmpfs.ts";
import { silentLogger } from "../../src/log/logger.ts";
import { createPipeline } from "../../src/pipeline.ts";
import { openDatabase } from "../../src/store/db.ts";

let h: Harness | null = null;
afterEach(async () => {
  await h?.close();
  h = null;
}, 60_000);

async function expect451(p: Promise<unknown>): Promise<void> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(SmtpError);
  expect([(err as SmtpError).code, (err as SmtpError).enhanced]).toEqual([451, "4.3.0"]);
}

function messageCount(hh: Harness): number {
  return hh.db.query<{ n: number }, []>("SELECT count(*) AS n FROM messages").get()?.n ?? -1;
}

/** The message counters' totals, zero rows left out. */
function counterTotals(hh: Harness): Record<string, number> {
  const rows = hh.db.query<{ metric: string; n: number }, []>("SELECT metric, sum(n) AS n FROM daily_counters WHERE metric NOT LIKE 'session%' GROUP BY metric HAVING sum(n) != 0").all();
  return Object.fromEntries(rows.map((r) => [r.metric, r.n]));
}

/**
 * The spool made a file (the rows commit, the message file cannot be written: 451) and deletes
 * of message rows refused as a full disk refuses them, until `DELETE FROM refuse_deletes`.
 */
async function unwritableSpoolAndUndeletableRows(h: Harness): Promise<string> {
  const spoolDir = join(h.config.dataDir, "spool");
  await rm(spoolDir, { recursive: true });
  await writeFile(spoolDir, "not a directory");
  h.db.exec("CREATE TABLE refuse_deletes (x)");
  h.db.exec("INSERT INTO refuse_deletes VALUES (1)");
  h.db.exec(`CREATE TRIGGER simulate_full_disk BEFORE DELETE ON messages WHEN (SELECT count(*) FROM refuse_deletes) > 0
             BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`);
  return spoolDir;
}

describe("storage failure", () => {
  test("spool directory unusable (replaced by a file) → 451, nothing recorded; works again once fixed", async () => {
    h = await makeHarness();
    const spoolDir = join(h.config.dataDir, "spool");
    await rm(spoolDir, { recursive: true });
    await writeFile(spoolDir, "not a directory");
    await expect451(h.pipeline.receive(message("hello"), envelope()));
    await expect451(h.pipeline.receive(message("a quote"), envelope()));
    expect(messageCount(h)).toBe(0);
    expect(h.db.query<{ n: number }, []>("SELECT count(*) AS n FROM deliveries").get()?.n).toBe(0);
    // Counted with their rows, taken back with them: a client that retries is counted once.
    expect(counterTotals(h)).toEqual({});
    await rm(spoolDir);
    await mkdir(spoolDir);
    const ok = await h.pipeline.receive(message("hello again"), envelope());
    await h.pipeline.settle();
    expect(messageCount(h)).toBe(1);
    expect(counterTotals(h)).toMatchObject({ received: 1, "action:archive": 1 });
    expect(ok.decision.action).toBe("archive");
  });

  test("the rows of a 451 that the database will not delete yet (disk full) are deleted once it will", async () => {
    h = await makeHarness();
    const spoolDir = await unwritableSpoolAndUndeletableRows(h);
    await expect451(h.pipeline.receive(message("hello"), envelope()));
    await expect451(h.pipeline.receive(message("a quote"), envelope()));
    expect(messageCount(h)).toBeGreaterThan(0); // left behind for now
    h.db.exec("DELETE FROM refuse_deletes");
    const deadline = Date.now() + 10_000;
    while (messageCount(h) > 0 && Date.now() < deadline) await Bun.sleep(100);
    expect(messageCount(h)).toBe(0);
    expect(h.db.query<{ n: number }, []>("SELECT count(*) AS n FROM deliveries").get()?.n).toBe(0);
    await rm(spoolDir);
    await mkdir(spoolDir);
  }, 30_000);

  // The rows were in a group whose sync had succeeded (only the files failed): before, a crash
  // before the delete left them past the durable mark, and the next start took them for accepted
  // mail whose file was lost: counted as received, the forward and the webhook failed "spool file
  // missing" (an error in the log, in `queue list`), an archive row pointing at no file.
  test("the rows of a 451 the database would not delete yet are not taken for accepted mail after a crash", async () => {
    h = await makeHarness();
    const spoolDir = await unwritableSpoolAndUndeletableRows(h);
    for (const subject of ["hello", "a quote", "an order"]) await expect451(h.pipeline.receive(message(subject), envelope()));
    expect(messageCount(h)).toBe(3); // left behind for now
    // The crash: the intake's retried delete dies with it (its database is closed here).
    await h.pipeline.close();
    h.db.close();
    h.db = openDatabase(h.config.databasePath);
    h.db.exec("DELETE FROM refuse_deletes");
    await rm(spoolDir);
    await mkdir(spoolDir);
    h.pipeline = createPipeline({ config: h.config, db: h.db, logger: silentLogger, rules: h.rules });
    const report = await h.pipeline.recover();
    expect(report.missing).toEqual([]);
    expect(report.unacknowledged.length).toBe(3);
    expect(messageCount(h)).toBe(0);
    expect(h.db.query<{ n: number }, []>("SELECT count(*) AS n FROM deliveries").get()?.n).toBe(0);
    expect(counterTotals(h)).toEqual({});
  }, 30_000);

  // The day directory was cached as made: every copy after failed ENOENT, the minute sweep's
  // retries too, and /healthz said the archive failed, until serve was restarted.
  test("archive removed while serving (an admin's script moved it away): the next copy makes it again", async () => {
    let clock = Date.now();
    h = await makeHarness({ now: () => clock });
    await h.pipeline.receive(message("keepcopy one"), envelope());
    await h.pipeline.settle();
    await rm(join(h.config.dataDir, "archive"), { recursive: true });
    const { id } = await h.pipeline.receive(message("keepcopy two"), envelope());
    await h.pipeline.settle();
    clock += 2 * 60_000;
    await h.pipeline.sweep();
    await h.pipeline.settle();
    expect((await listFiles(join(h.config.dataDir, "archive"))).map((f) => f.slice(f.indexOf("/") + 1))).toEqual([`${id}.eml`]);
    expect(h.db.query<{ status: string }, [string]>("SELECT status FROM messages WHERE id = ?").get(id)?.status).toBe("done");
    expect(h.pipeline.fileWriteFailure()).toBeNull();
  });

  test("database write fails → 451, the spool file written for it is removed", async () => {
    h = await makeHarness();
    h.db.exec("CREATE TRIGGER simulate_db_failure BEFORE INSERT ON messages BEGIN SELECT RAISE(ABORT, 'simulated disk I/O error'); END");
    const many = Array.from({ length: 5 }, (_, i) => expect451(h!.pipeline.receive(message(`m${i}`), envelope())));
    await Promise.all(many);
    expect(await listFiles(join(h.config.dataDir, "spool"))).toEqual([]);
    h.db.exec("DROP TRIGGER simulate_db_failure");
    expect(messageCount(h)).toBe(0);
    await h.pipeline.receive(message("after"), envelope());
    expect(messageCount(h)).toBe(1);
  });

  test("full disk (DATA_DIR on a 1 MB tmpfs) → 451 for what does not fit, earlier messages intact", () =>
    withTmpfs("mailgw-tmpfs-", 1, async (mnt) => {
      h = await makeHarness({ env: { DATA_DIR: mnt } });
      const accepted: string[] = [];
      let refused = 0;
      for (let i = 0; i < 12; i++) {
        try {
          accepted.push((await h.pipeline.receive(message(`quote ${i}`, 150_000), envelope())).id);
        } catch (err) {
          expect(err).toBeInstanceOf(SmtpError);
          expect((err as SmtpError).code).toBe(451);
          refused++;
        }
      }
      expect(refused).toBeGreaterThan(0);
      expect(accepted.length).toBeGreaterThan(0);
      expect(messageCount(h)).toBe(accepted.length);
      const spooled = await listFiles(join(mnt, "spool"));
      expect(spooled).toEqual(accepted.map((id) => `${id}.eml`).sort());
      for (const id of accepted) expect((await h.pipeline.readSpooled(id)).byteLength).toBeGreaterThan(150_000);
      await h.close();
      h = null;
    }));
});
