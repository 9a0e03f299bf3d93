/**
 * Whether the database, or the archive, takes a write again after a received message got 451
 * because writing there failed (disk full, a read-only file, a lock held past busy_timeout by a
 * `sqlite3` shell or a backup, a file where today's archive directory goes). /healthz said 503
 * from such a failure until the next message was stored; a load balancer or an orchestrator that
 * stops sending mail to an unhealthy gateway then kept it "unhealthy" for good. So while a
 * failure is on record, each health check tries one small write of its own (a `messages` row
 * removed in the same transaction, and a row in `meta`, without an fsync; a file in today's
 * archive directory, removed at once: nothing depends on either) and forgets the failure when it
 * goes through.
 * Trusts: nothing. Failure: never throws; a failed probe reports the failure still.
 */
import type { Database } from "bun:sqlite";
import { randomBytes } from "node:crypto";
import { open, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { describeError } from "../errors.ts";
import { tryCommitWithoutWaiting } from "../spool/wal-sync.ts";
import { dayKey } from "./db.ts";

const PROBE_KEY = "write_probe";
/**
 * The probe's own `messages` row, inserted and deleted in one transaction (no reader ever sees
 * it). After every message id ('~' sorts after their letters and digits), as a new message's
 * row goes: the same rightmost pages of the table and its indexes a message's commit writes. A
 * row in `meta` alone went through with a `messages` index damaged ("database disk image is
 * malformed" for every message) and /healthz said 200.
 */
const PROBE_MESSAGE_ID = "~write-probe";

/** One message row's worth of writes (see PROBE_MESSAGE_ID), left as it was, and the probe's `meta` row. */
function probeWrite(db: Database): void {
  const now = Date.now();
  db.query(
    `INSERT INTO messages (id, received_at, client_ip, helo, tls, mail_from, recipients, subject, size, category, action, status, commit_seq)
     VALUES (?, ?, '', '', 0, '', '[]', '', 0, 'write-probe', 'drop', 'spooled', ?)`,
  ).run(PROBE_MESSAGE_ID, now, Number.MAX_SAFE_INTEGER);
  db.query("DELETE FROM messages WHERE id = ?").run(PROBE_MESSAGE_ID);
  db.query("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)").run(PROBE_KEY, String(now));
}
/** How long a probe waits for a write lock held elsewhere (the health check must answer fast). */
const PROBE_LOCK_WAIT_MS = 500;
const PROBE_RETRY_MS = 10;

/**
 * `failure` (the last commit's, or null) as it stands now: null when the probe write went
 * through (`recovered` is called first), else why the database still refuses writes.
 */
export async function recheckWriteFailure(db: Database, failure: string | null, recovered: () => void): Promise<string | null> {
  if (failure === null) return null;
  const write = (): void => probeWrite(db);
  const deadline = performance.now() + PROBE_LOCK_WAIT_MS;
  try {
    while (!tryCommitWithoutWaiting(db, write)) {
      if (performance.now() >= deadline) return `${failure} (the database is still locked by another connection)`;
      await Bun.sleep(PROBE_RETRY_MS);
    }
  } catch (err) {
    return describeError(err);
  }
  recovered();
  return null;
}

/**
 * `failure` (the last message file's, or null) as it stands now: null when a file can be written
 * and fsynced in today's archive directory, or in `archive/` while today's does not exist yet
 * (the probe never creates it: the archive fsyncs the directories it creates, so durability stays
 * its job), and then `sync` (the one every accepted message waits for) goes through; `recovered`
 * is called first. Without the syncs, a syncfs failing with EIO for every message was forgotten
 * at the first check: 200 while all mail got 451. The spool is probed by /healthz itself. The
 * probe is named `.tmp` and starts with a dot: no archive reader takes it for a message.
 */
export async function recheckFileFailure(dataDir: string, now: number, failure: string | null, sync: () => Promise<void>, recovered: () => void): Promise<string | null> {
  if (failure === null) return null;
  const root = join(dataDir, "archive");
  const day = join(root, dayKey(now));
  try {
    const dir = await stat(day).then((s) => (s.isDirectory() ? day : null), () => root);
    if (dir === null) return failure;
    await writeProbeFile(join(dir, `.write-probe-${process.pid}-${randomBytes(6).toString("hex")}.tmp`));
    await sync();
  } catch {
    return failure;
  }
  recovered();
  return null;
}

/** Creates, writes and fsyncs `path`, and removes it whatever happened (once created). */
async function writeProbeFile(path: string): Promise<void> {
  const fh = await open(path, "wx");
  try {
    await fh.writeFile("ok\n");
    await fh.sync();
  } finally {
    await fh.close().catch(() => undefined);
    await unlink(path);
  }
}
