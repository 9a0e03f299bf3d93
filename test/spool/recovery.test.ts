/**
 * Recovery after a simulated crash: the spool and the rows are left as a kill -9 at each
 * step would leave them, then `recover()` runs as serve does at start.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { link, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { newMessageId } from "../../src/spool/ids.ts";
import { dayKey } from "../../src/store/db.ts";
import { bumpCounterBatch } from "../../src/store/counters.ts";
import { readIntakeMarks, writeIntakeMarks } from "../../src/store/intake-marks.ts";
import { intakeCounterIncrements } from "../../src/store/intake-rows.ts";
import { insertDelivery, insertMessage, type MessageRow } from "../../src/store/messages.ts";
import { listFiles, makeHarness, message, type Harness } from "../pipeline/helpers.ts";
import { captureLogger } from "../smtp/helpers.ts";

let h: Harness | null = null;
afterEach(async () => {
  await h?.close();
  h = null;
}, 60_000);

function row(id: string, receivedAt: number, over: Partial<MessageRow> = {}): MessageRow {
  return {
    id, receivedAt, clientIp: "192.0.2.1", helo: "x", tls: false, mailFrom: "a@b.org", recipients: ["bob@example.com"],
    subject: "s", size: 10, rule: null, category: "default", action: "archive", archive: true, status: "spooled", ...over,
  };
}

describe("recover", () => {
  test("finishes accepted messages, quarantines orphans, removes temporary files; idempotent", async () => {
    h = await makeHarness({ recover: false });
    const spool = join(h.config.dataDir, "spool");
    const t = Date.now() - 3 * 86_400_000; // received three days ago: archived under that day
    const accepted = newMessageId(t);
    const alreadyLinked = newMessageId(t + 1);
    const orphan = newMessageId(t + 2);
    const deliveredDone = newMessageId(t + 3);
    const heldDone = newMessageId(t + 4);
    const bytes = (id: string) => message(`recover ${id}`);
    for (const id of [accepted, alreadyLinked, orphan, deliveredDone, heldDone]) await writeFile(join(spool, `${id}.eml`), bytes(id));
    await writeFile(join(spool, `${newMessageId()}.tmp`), "half a mess");
    await writeFile(join(spool, "junk.txt"), "not ours");
    insertMessage(h.db, row(accepted, t));
    insertMessage(h.db, row(alreadyLinked, t + 1));
    await mkdir(join(h.config.dataDir, "archive", dayKey(t)), { recursive: true });
    await link(join(spool, `${alreadyLinked}.eml`), join(h.config.dataDir, "archive", dayKey(t), `${alreadyLinked}.eml`));
    for (const [id, state] of [[deliveredDone, "delivered"], [heldDone, "held"]] as const) {
      insertMessage(h.db, row(id, t, { status: "done", archive: false, action: "forward" }));
      insertDelivery(h.db, { messageId: id, kind: "forward", target: ["x@y.org"], rule: null, category: "default", state, createdAt: t });
    }

    const report = await h.pipeline.recover();
    expect(report.temporaryRemoved).toBe(1);
    expect(report.finished).toBe(2);
    expect(report.orphaned.length).toBe(2);
    expect(report.released).toBe(1);
    const day = dayKey(t);
    const expectFiles = async () => {
      expect(await listFiles(h!.config.dataDir)).toEqual(
        [
          `archive/${day}/${accepted}.eml`,
          `archive/${day}/${alreadyLinked}.eml`,
          `spool/${heldDone}.eml`,
          `spool/orphaned/${orphan}.eml`,
          "spool/orphaned/junk.txt",
        ].sort(),
      );
    };
    await expectFiles();
    for (const id of [accepted, alreadyLinked]) {
      expect(new Uint8Array(await readFile(join(h.config.dataDir, "archive", day, `${id}.eml`)))).toEqual(bytes(id));
    }
    const statuses = h.db.query<{ id: string; status: string; archive_path: string | null }, []>("SELECT id, status, archive_path FROM messages ORDER BY id").all();
    expect(statuses.every((s) => s.status === "done")).toBe(true);
    expect(statuses.find((s) => s.id === accepted)?.archive_path).toBe(`archive/${day}/${accepted}.eml`);

    // A second start (crash during recovery, or just a restart) changes nothing.
    await h.restart();
    await expectFiles();
  });

  test("an accepted row whose spool file is gone but whose archive copy exists is marked done", async () => {
    h = await makeHarness({ recover: false });
    const t = Date.now();
    const id = newMessageId(t);
    insertMessage(h.db, row(id, t));
    const rel = `archive/${dayKey(t)}/${id}.eml`;
    await mkdir(join(h.config.dataDir, "archive", dayKey(t)), { recursive: true });
    await writeFile(join(h.config.dataDir, rel), "x");
    const report = await h.pipeline.recover();
    expect(report.unacknowledged).toEqual([]);
    expect(h.db.query<{ status: string; archive_path: string }, [string]>("SELECT status, archive_path FROM messages WHERE id = ?").get(id)).toEqual({ status: "done", archive_path: rel });
  });

  test("records whose spool file never became durable (crash before the reply) are removed, and uncounted", async () => {
    h = await makeHarness({ recover: false });
    const t = Date.now();
    const archiveId = newMessageId(t);
    const forwardId = newMessageId(t + 1);
    // Group 3 was committed, then the crash came before its syncfs finished (durable: 2).
    const uncertain = { commitSeq: 3, spoolCrc: 1 };
    const rows = [row(archiveId, t, uncertain), row(forwardId, t, { ...uncertain, status: "done", archive: false, action: "forward" })];
    for (const r of rows) insertMessage(h.db, r);
    writeIntakeMarks(h.db, { lastSeq: 3, durableSeq: 2 });
    bumpCounterBatch(h.db, intakeCounterIncrements(rows)); // as the intake commits them
    insertDelivery(h.db, { messageId: forwardId, kind: "forward", target: ["x@y.org"], rule: null, category: "default", state: "queued", createdAt: t });
    const report = await h.pipeline.recover();
    expect(report.unacknowledged.sort()).toEqual([archiveId, forwardId].sort());
    expect(report.missing).toEqual([]);
    expect(h.db.query<{ n: number }, []>("SELECT (SELECT count(*) FROM messages) + (SELECT count(*) FROM deliveries) AS n").get()?.n).toBe(0);
    // No client got 250 for them: the stats page must not count them as received.
    const counted = h.db.query<{ metric: string; n: number }, []>("SELECT metric, sum(n) AS n FROM daily_counters GROUP BY metric ORDER BY metric").all();
    expect(counted).toEqual([{ metric: "action:archive", n: 0 }, { metric: "action:forward", n: 0 }, { metric: "archived", n: 0 }, { metric: "received", n: 0 }]);
  });

  // A data dir restored from a backup whose files were copied after the database: the rows
  // are of durable groups, their clients got 250, and the files went with finished deliveries.
  test("acknowledged records (durable groups) whose file is gone are kept and counted; their deliveries fail with the reason", async () => {
    const logs = captureLogger();
    h = await makeHarness({ recover: false, logger: logs });
    const t = Date.now();
    const archiveId = newMessageId(t);
    const forwardId = newMessageId(t + 1);
    const durable = { commitSeq: 5, spoolCrc: 1 };
    const rows = [row(archiveId, t, durable), row(forwardId, t, { ...durable, status: "done", archive: false, action: "forward" })];
    for (const r of rows) insertMessage(h.db, r);
    writeIntakeMarks(h.db, { lastSeq: 5, durableSeq: 5 });
    bumpCounterBatch(h.db, intakeCounterIncrements(rows));
    insertDelivery(h.db, { messageId: forwardId, kind: "forward", target: ["x@y.org"], rule: null, category: "default", state: "deferred", createdAt: t });
    const report = await h.pipeline.recover();
    expect(report.unacknowledged).toEqual([]);
    expect(report.missing.sort()).toEqual([archiveId, forwardId].sort());
    const messages = h.db.query<{ id: string; status: string }, []>("SELECT id, status FROM messages ORDER BY id").all();
    expect(messages).toEqual([archiveId, forwardId].sort().map((id) => ({ id, status: "done" })));
    const delivery = h.db.query<{ state: string; last_error: string }, []>("SELECT state, last_error FROM deliveries").get();
    expect(delivery?.state).toBe("failed");
    expect(delivery?.last_error).toContain("spool file missing at start");
    const counted = h.db.query<{ metric: string; n: number }, []>("SELECT metric, sum(n) AS n FROM daily_counters GROUP BY metric ORDER BY metric").all();
    // The delivery it failed counts as failed, as one an attempt fails (mailgw_deliveries_total).
    expect(counted).toEqual([{ metric: "action:archive", n: 1 }, { metric: "action:forward", n: 1 }, { metric: "archived", n: 1 }, { metric: "failed:forward", n: 1 }, { metric: "received", n: 2 }]);
    const missingLines = () => logs.lines.filter((l) => l.level === "error" && l.msg.startsWith("accepted message's spool file is missing"));
    expect(missingLines()).toHaveLength(2);
    // The next start has nothing new to say: the same error at every start would bury real ones.
    const again = await h.pipeline.recover();
    expect(again.missing).toEqual([]);
    expect(missingLines()).toHaveLength(2);
    // A delivery retried since (queue retry) and failed by its attempt is not reported again either.
    h.db.run("UPDATE deliveries SET state = 'failed', last_error = 'spool file missing: ENOENT'");
    expect((await h.pipeline.recover()).missing).toEqual([]);
    // One failed for another reason (a 550), whose file went since: reported once, with the reason.
    h.db.run("UPDATE deliveries SET state = 'failed', last_error = '550 5.1.1 no such user'");
    expect((await h.pipeline.recover()).missing).toEqual([forwardId]);
    expect(h.db.query<{ last_error: string }, []>("SELECT last_error FROM deliveries").get()?.last_error).toContain("spool file missing at start");
    expect(missingLines()).toHaveLength(3);
    // It was counted failed by its attempt already: the new reason does not count it again.
    expect(h.db.query<{ n: number }, []>("SELECT sum(n) AS n FROM daily_counters WHERE metric = 'failed:forward'").get()?.n).toBe(1);
  });

  test("rows of groups after the durable mark: files that do not match size and CRC were never acknowledged", async () => {
    h = await makeHarness({ recover: false });
    const spool = join(h.config.dataDir, "spool");
    const t = Date.now();
    const [durable, complete, zeroFilled, truncated, missing] = [0, 1, 2, 3, 4].map((i) => newMessageId(t + i)) as [string, string, string, string, string];
    const bytes = (id: string) => message(`uncertain ${id}`);
    const crc = (id: string) => Bun.hash.crc32(bytes(id));
    const size = (id: string) => bytes(id).byteLength;
    // Group 7 is durable (its file is never checked, even when it no longer matches).
    await writeFile(join(spool, `${durable}.eml`), "changed since");
    insertMessage(h.db, row(durable, t, { size: size(durable), spoolCrc: crc(durable), commitSeq: 7 }));
    // Group 8 was committed, then the crash came during its syncfs.
    await writeFile(join(spool, `${complete}.eml`), bytes(complete));
    await writeFile(join(spool, `${zeroFilled}.eml`), new Uint8Array(size(zeroFilled)));
    await writeFile(join(spool, `${truncated}.eml`), bytes(truncated).subarray(0, 10));
    for (const id of [complete, zeroFilled, truncated, missing]) {
      insertMessage(h.db, row(id, t, { size: size(id), spoolCrc: crc(id), commitSeq: 8, status: "done", archive: false, action: "forward" }));
      insertDelivery(h.db, { messageId: id, kind: "forward", target: ["x@y.org"], rule: null, category: "default", state: "queued", createdAt: t });
    }
    writeIntakeMarks(h.db, { lastSeq: 8, durableSeq: 7 });

    const report = await h.pipeline.recover();
    expect(report.unacknowledged.sort()).toEqual([zeroFilled, truncated, missing].sort());
    expect(report.orphaned.map((p) => p.split("/").pop()).sort()).toEqual([`${zeroFilled}.eml`, `${truncated}.eml`].sort());
    const ids = h.db.query<{ id: string }, []>("SELECT id FROM messages ORDER BY id").all().map((r) => r.id);
    expect(ids).toEqual([durable, complete].sort());
    expect(new Uint8Array(await readFile(join(spool, `${complete}.eml`)))).toEqual(bytes(complete));
    expect(await readFile(join(spool, "orphaned", `${zeroFilled}.eml`))).toEqual(Buffer.alloc(size(zeroFilled)));
    // Everything left is durable now: the next start checks nothing again.
    expect(readIntakeMarks(h.db)).toEqual({ lastSeq: 8, durableSeq: 8 });
  });

  test("archive-only rows above the durable mark: the archive file is checked, a bad or missing one dropped", async () => {
    h = await makeHarness({ recover: false });
    const t = Date.now();
    const [good, zeroFilled, missing] = [0, 1, 2].map((i) => newMessageId(t + i)) as [string, string, string];
    const bytes = (id: string) => message(`direct ${id}`);
    const rel = (id: string) => `archive/${dayKey(t)}/${id}.eml`;
    await mkdir(join(h.config.dataDir, "archive", dayKey(t)), { recursive: true });
    await writeFile(join(h.config.dataDir, rel(good)), bytes(good));
    await writeFile(join(h.config.dataDir, rel(zeroFilled)), new Uint8Array(bytes(zeroFilled).byteLength));
    for (const id of [good, zeroFilled, missing]) {
      const b = bytes(id);
      insertMessage(h.db, row(id, t, { status: "done", size: b.byteLength, spoolCrc: Bun.hash.crc32(b), commitSeq: 3, archivePath: rel(id) }));
    }
    writeIntakeMarks(h.db, { lastSeq: 3, durableSeq: 2 });

    const report = await h.pipeline.recover();
    expect(report.unacknowledged.sort()).toEqual([zeroFilled, missing].sort());
    expect(await listFiles(h.config.dataDir)).toEqual([rel(good), `spool/orphaned/${zeroFilled}.eml`].sort());
    const ids = h.db.query<{ id: string }, []>("SELECT id FROM messages").all().map((r) => r.id);
    expect(ids).toEqual([good]);
  });
});
