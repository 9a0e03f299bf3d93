/**
 * An archived message's spool file whose removal fails for a moment (the spool directory made
 * read-only or immutable by an admin's script) must be removed once it can be, while serve runs.
 * finishBatch removed it once, after the row was marked done; a failure was logged "finishing
 * accepted messages failed, will retry" but nothing retried it (the sweep looks at `spooled`
 * rows only): the file stayed until the next restart's recovery. The failure is simulated on
 * the Spool (root ignores modes; chattr cannot be timed between the archive link and the unlink).
 */
import { afterEach, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Spool } from "../../src/spool/spool.ts";
import { REMOVE_RETRY_MS } from "../../src/spool/removal-retry.ts";
import { envelope, makeHarness, message, type Harness } from "./helpers.ts";

let h: Harness | null = null;
const realRemove = Spool.prototype.remove;
afterEach(async () => {
  Spool.prototype.remove = realRemove;
  await h?.close();
  h = null;
}, 60_000);

test("an archived message's spool file whose removal failed is removed again, not left until a restart", async () => {
  // Not recovered: no writer thread, so archive-only mail goes through the spool and the finisher
  // (as with an archive on a file system of its own, or no syncfs).
  h = await makeHarness({ recover: false });
  let failures = 1; // the removal after the done mark fails
  Spool.prototype.remove = function (this: Spool, id: string) {
    if (failures-- > 0) return Promise.reject(Object.assign(new Error("EPERM: operation not permitted, unlink"), { code: "EPERM" }));
    return realRemove.call(this, id);
  };
  const r = await h.pipeline.receive(message("hello"), envelope());
  await h.pipeline.settle();
  const spoolFile = new Spool(h.config.dataDir).pathOf(r.id);
  const row = h.db.query<{ status: string; archive_path: string | null }, [string]>("SELECT status, archive_path FROM messages WHERE id = ?").get(r.id);
  expect(row?.status).toBe("done");
  const archived = join(h.config.dataDir, row?.archive_path ?? "none");
  expect(existsSync(archived)).toBe(true);
  expect(existsSync(spoolFile)).toBe(true); // could not be removed
  const deadline = Date.now() + REMOVE_RETRY_MS + 3_000;
  while (existsSync(spoolFile) && Date.now() < deadline) await Bun.sleep(100);
  expect(existsSync(spoolFile)).toBe(false);
  expect(existsSync(archived)).toBe(true);
}, 60_000);
