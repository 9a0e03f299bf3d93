/**
 * The minute sweep releases held-back deliveries older than a minute: those whose release the
 * intake could not commit. It must not release those of a group still being written and synced:
 * a spool file system that stops answering for over a minute (a hung network volume, a syncfs
 * of big messages on a slow disk; fsfreeze here) held the group's write while the sweep made
 * its forward due. The delivery thread then claimed it before its file existed ("spool file
 * missing": failed for good), and the client got its 250 once the disk came back — the forward
 * of an acknowledged message lost. Had the write failed instead, the message answered 451
 * would have been delivered before it.
 *
 * Needs root (a loop-mounted ext4 that can be frozen): elsewhere the test prints why it is skipped.
 */
import { afterEach, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { NOT_YET_DURABLE_AT } from "../../src/store/messages.ts";
import { loopExt4, run } from "../helpers/loop-ext4.ts";
import { envelope, makeHarness, message, type Harness } from "./helpers.ts";

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);


test("the minute sweep leaves a group's deliveries held back while its spool write hangs for over a minute", async () => {
  const mnt = loopExt4("mailgw-sweep-frozen-", cleanups);
  if (mnt === null) return;
  const start = Date.now();
  let clock = start;
  // The data dir (spool) on the frozen file system; the database stays on a working one.
  const h: Harness = await makeHarness({ env: { DATA_DIR: join(mnt, "data") }, now: () => clock });
  cleanups.push(() => h.close());
  const frozen = run("fsfreeze", "-f", mnt);
  if (!frozen.ok) {
    console.log(`skipped: cannot freeze the loop ext4 (${frozen.out})`);
    return;
  }
  let thawed = false;
  const thaw = (): void => {
    if (!thawed) run("fsfreeze", "-u", mnt);
    thawed = true;
  };
  cleanups.push(thaw); // runs before h.close(): closing waits for the write
  const due = h.db.query<{ message_id: string; next_attempt_at: number }, []>("SELECT message_id, next_attempt_at FROM deliveries");

  const received = h.pipeline.receive(message("a quote, please"), envelope());
  // The rows are committed (their deliveries held back); the spool file's write waits for the disk.
  const deadline = Date.now() + 10_000;
  while (due.all().length === 0 && Date.now() < deadline) await Bun.sleep(20);
  const [row] = due.all();
  expect(row?.next_attempt_at).toBe(NOT_YET_DURABLE_AT);

  clock = start + 61_000; // the disk has not answered for over a minute: the sweep runs
  await h.pipeline.sweep();
  const after = due.all();
  expect(after).toEqual([{ message_id: row?.message_id ?? "", next_attempt_at: NOT_YET_DURABLE_AT }]);
  expect(existsSync(join(mnt, "data", "spool", `${row?.message_id}.eml`))).toBe(false);

  thaw();
  const out = await received; // the 250
  expect(out.id).toBe(row?.message_id ?? "");
  expect(due.all()[0]?.next_attempt_at).not.toBe(NOT_YET_DURABLE_AT);
  expect(existsSync(join(mnt, "data", "spool", `${out.id}.eml`))).toBe(true);
}, 60_000);
