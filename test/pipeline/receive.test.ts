import { afterEach, describe, expect, test } from "bun:test";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { SmtpError } from "../../src/errors.ts";
import { isMessageId } from "../../src/spool/ids.ts";
import { dayKey } from "../../src/store/db.ts";
import { envelope, listFiles, makeHarness, message, type Harness } from "./helpers.ts";

let h: Harness | null = null;
afterEach(async () => {
  await h?.close();
  h = null;
}, 60_000);

function row(hh: Harness, id: string) {
  return hh.db
    .query<{ status: string; action: string; rule: string | null; category: string; archive_path: string | null; recipients: string; subject: string; size: number; archive: number }, [string]>(
      "SELECT status, action, rule, category, archive_path, recipients, subject, size, archive FROM messages WHERE id = ?",
    )
    .get(id);
}

function deliveries(hh: Harness, id: string) {
  return hh.db
    .query<{ kind: string; target: string; state: string; rule: string | null; category: string }, [string]>(
      "SELECT kind, target, state, rule, category FROM deliveries WHERE message_id = ?",
    )
    .all(id);
}

function counter(hh: Harness, metric: string, category: string): number {
  return hh.db.query<{ n: number }, [string, string]>("SELECT coalesce(sum(n), 0) AS n FROM daily_counters WHERE metric = ? AND category = ?").get(metric, category)?.n ?? 0;
}

describe("receive", () => {
  test("archive: the archive file holds the exact bytes, the row is done, the spool is empty", async () => {
    h = await makeHarness();
    const raw = message("hello there", 5000);
    const out = await h.pipeline.receive(raw, envelope());
    expect(isMessageId(out.id)).toBe(true);
    expect(out.decision.action).toBe("archive");
    await h.pipeline.settle();
    const rel = join("archive", dayKey(Date.now()), `${out.id}.eml`);
    expect(new Uint8Array(await readFile(join(h.config.dataDir, rel)))).toEqual(raw);
    const r = row(h, out.id);
    expect(r).toMatchObject({ status: "done", action: "archive", rule: null, category: "default", archive_path: rel, subject: "hello there", size: raw.byteLength });
    expect(JSON.parse(r?.recipients ?? "null")).toEqual(["bob@example.com"]);
    expect(await listFiles(join(h.config.dataDir, "spool"))).toEqual([]);
    expect(counter(h, "received", "default")).toBe(1);
    expect(counter(h, "action:archive", "default")).toBe(1);
  });

  test("the id is generated, never taken from the message", async () => {
    h = await makeHarness();
    const a = await h.pipeline.receive(message("one"), envelope());
    const b = await h.pipeline.receive(message("two"), envelope());
    expect(a.id).not.toBe(b.id);
    expect(a.id < b.id || a.id.slice(0, 10) === b.id.slice(0, 10)).toBe(true);
    await h.pipeline.settle();
    const files = await listFiles(h.config.dataDir);
    expect(files.every((f) => !f.includes("passwd") && !f.includes(".."))).toBe(true);
  });

  test("forward without a relay: delivery held, spool file kept for the worker", async () => {
    h = await makeHarness();
    const raw = message("a quote please");
    const out = await h.pipeline.receive(raw, envelope());
    expect(out.decision.action).toBe("forward");
    await h.pipeline.settle();
    expect(deliveries(h, out.id)).toEqual([{ kind: "forward", target: '["sales@partner.org"]', state: "held", rule: "to-sales", category: "sales" }]);
    expect(row(h, out.id)).toMatchObject({ status: "done", action: "forward", archive_path: null });
    expect(await h.pipeline.readSpooled(out.id)).toEqual(raw);
    expect(await h.pipeline.releaseSpool(out.id)).toBe(false);
    expect(await listFiles(join(h.config.dataDir, "archive"))).toEqual([]);
  });

  test("forward with a relay: delivery queued; released once delivered, kept while failed", async () => {
    h = await makeHarness({ env: { RELAY_SMTP_HOST: "127.0.0.1", RELAY_SMTP_SECURE: "none" } });
    const out = await h.pipeline.receive(message("quote 1"), envelope());
    expect(deliveries(h, out.id)[0]?.state).toBe("queued");
    h.db.query("UPDATE deliveries SET state = 'failed' WHERE message_id = ?").run(out.id);
    expect(await h.pipeline.releaseSpool(out.id)).toBe(false);
    expect((await h.pipeline.readSpooled(out.id)).byteLength).toBeGreaterThan(0);
    h.db.query("UPDATE deliveries SET state = 'delivered' WHERE message_id = ?").run(out.id);
    expect(await h.pipeline.releaseSpool(out.id)).toBe(true);
    expect(await listFiles(join(h.config.dataDir, "spool"))).toEqual([]);
  });

  test("forward with archive: true archives and keeps the spool file until delivered", async () => {
    h = await makeHarness();
    const raw = message("keepcopy of this");
    const out = await h.pipeline.receive(raw, envelope());
    await h.pipeline.settle();
    const r = row(h, out.id);
    expect(r).toMatchObject({ status: "done", action: "forward", archive: 1 });
    expect(new Uint8Array(await readFile(join(h.config.dataDir, r?.archive_path ?? "missing")))).toEqual(raw);
    expect(await h.pipeline.readSpooled(out.id)).toEqual(raw);
  });

  test("webhook: delivery queued with the URL", async () => {
    h = await makeHarness();
    const out = await h.pipeline.receive(message("new order 42"), envelope());
    expect(deliveries(h, out.id)).toEqual([{ kind: "webhook", target: "https://erp.partner.org/inbound", state: "queued", rule: "orders-hook", category: "orders" }]);
  });

  test("drop: counted and recorded, nothing kept on disk", async () => {
    h = await makeHarness();
    const out = await h.pipeline.receive(message("dropme now"), envelope());
    await h.pipeline.settle();
    expect(row(h, out.id)).toMatchObject({ status: "done", action: "drop" });
    expect(counter(h, "action:drop", "noise")).toBe(1);
    expect(await listFiles(h.config.dataDir)).toEqual([]);
  });

  test("reject: 550 5.7.1 with the rule's text, row recorded, nothing stored", async () => {
    h = await makeHarness();
    const err = await h.pipeline.receive(message("[SPAM] buy now"), envelope()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SmtpError);
    const e = err as SmtpError;
    expect([e.code, e.enhanced, e.publicText]).toEqual([550, "5.7.1", "Spam is not welcome here"]);
    const plain = (await h.pipeline.receive(message("rejectplain"), envelope()).catch((x: unknown) => x)) as SmtpError;
    expect([plain.code, plain.publicText]).toEqual([550, "Message rejected"]);
    const rows = h.db.query<{ action: string; status: string; rule: string }, []>("SELECT action, status, rule FROM messages ORDER BY id").all();
    expect(rows).toEqual([
      { action: "reject", status: "done", rule: "reject-spam" },
      { action: "reject", status: "done", rule: "reject-plain" },
    ]);
    expect(counter(h, "action:reject", "spam")).toBe(2);
    expect(counter(h, "received", "spam")).toBe(2);
    expect(await listFiles(h.config.dataDir)).toEqual([]);
  });

  test("group commit: 50 concurrent receives are all durable, in fewer commits", async () => {
    h = await makeHarness();
    const raws = Array.from({ length: 50 }, (_, i) => message(`bulk ${i}`, 4000));
    const outs = await Promise.all(raws.map((raw) => h!.pipeline.receive(raw, envelope())));
    expect(new Set(outs.map((o) => o.id)).size).toBe(50);
    const stats = h.pipeline.intakeStats();
    expect(stats.committed).toBe(50);
    expect(stats.groups).toBeLessThan(50);
    // Durable at resolve time: every row is committed and every file is in the spool or archive.
    const n = h.db.query<{ n: number }, []>("SELECT count(*) AS n FROM messages").get()?.n;
    expect(n).toBe(50);
    await h.pipeline.settle();
    for (const [i, o] of outs.entries()) {
      const path = join(h.config.dataDir, "archive", dayKey(Date.now()), `${o.id}.eml`);
      expect(new Uint8Array(await readFile(path))).toEqual(raws[i]!);
    }
    expect(counter(h, "received", "default")).toBe(50);
  });

  test("classification uses the rules in force when the message arrives", async () => {
    h = await makeHarness();
    expect((await h.pipeline.receive(message("hello"), envelope())).decision.action).toBe("archive");
    await writeFile(h.config.rulesFile, "domains: [example.com]\ndefault: { action: drop, category: off }\nrules: []\n");
    expect(await h.rules.reload()).toMatchObject({ ok: true, changed: true });
    const out = await h.pipeline.receive(message("hello"), envelope());
    expect(out.decision).toMatchObject({ action: "drop", category: "off" });
  });

  test("a 25 MB message is stored and archived byte for byte", async () => {
    h = await makeHarness();
    const raw = message("big", 25 * 1024 * 1024 - 4096);
    const out = await h.pipeline.receive(raw, envelope());
    await h.pipeline.settle();
    const stored = new Uint8Array(await readFile(join(h.config.dataDir, "archive", dayKey(Date.now()), `${out.id}.eml`)));
    expect(stored.byteLength).toBe(raw.byteLength);
    expect(Buffer.compare(stored, raw)).toBe(0);
  }, 30_000);

  test("after an 8 MB+ message, before its parse, the heap governor is asked to check; not after smaller ones", async () => {
    let checks = 0;
    h = await makeHarness({ afterBigMessage: () => void checks++ });
    await h.pipeline.receive(message("medium", 7 * 1024 * 1024), envelope());
    expect(checks).toBe(0);
    const out = await h.pipeline.receive(message("big", 9 * 1024 * 1024), envelope());
    expect(checks).toBe(1);
    expect(out.decision).toMatchObject({ action: "archive" });
  }, 30_000);

  test("close() waits for receives in flight, then refuses new ones with 451", async () => {
    h = await makeHarness();
    const inFlight = Array.from({ length: 10 }, (_, i) => h!.pipeline.receive(message(`late ${i}`), envelope()));
    await h.pipeline.close();
    const outs = await Promise.all(inFlight);
    expect(h.db.query<{ n: number }, []>("SELECT count(*) AS n FROM messages WHERE status = 'done'").get()?.n).toBe(outs.length);
    const err = (await h.pipeline.receive(message("after close"), envelope()).catch((e: unknown) => e)) as SmtpError;
    expect([err.code, err.enhanced]).toEqual([451, "4.3.0"]);
  });
});
