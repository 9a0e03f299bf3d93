/**
 * A disk that stops answering (fsfreeze here; a hung network volume, or a slow disk writing back
 * the syncfs of big messages, in production) must not stop the event loop: SMTP clients still get
 * their greeting and /healthz answers 503 within its probe's 2 s, as healthz.ts promises. The
 * SMTP session counters were committed on the event loop every 2 s; their write to the WAL waited
 * for the file system (23 s behind a syncfs of 240 MB on a 5 MB/s disk), and with it every session.
 *
 * Needs root (a loop-mounted ext4 that can be frozen): elsewhere the test prints why it is skipped.
 */
import { afterEach, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { createConnection } from "node:net";
import { join } from "node:path";
import { greet, RawClient } from "../smtp/helpers.ts";
import { serveDir, startServe } from "../smtp/serve-process.ts";
import { loopExt4, run } from "../helpers/loop-ext4.ts";

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);


/** Milliseconds until the SMTP greeting arrives, or null if none within `ms`. */
function greetingAfter(port: number, ms: number): Promise<number | null> {
  const start = performance.now();
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    const done = (v: number | null) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(null), ms);
    socket.once("data", () => done(performance.now() - start));
    socket.once("error", () => done(null));
  });
}

test("while the data dir's file system is frozen, SMTP still greets and /healthz answers 503", async () => {
  const mnt = loopExt4("mailgw-frozen-", cleanups);
  if (mnt === null) return;
  const dir = serveDir();
  const data = join(mnt, "data");
  const s = await startServe("source", dir, { DATA_DIR: data, DATABASE_URL: `file:${join(data, "mail-gateway.db")}` });
  cleanups.push(async () => {
    if (s.proc.exitCode === null) await s.stop("SIGKILL");
  });

  // A session ends: its count waits for the next flush of the session counters (every 2 s).
  const c = await RawClient.connect(s.smtpPort);
  await greet(c);
  c.end();
  // A thaw that outlives this process: killed before its cleanup (a timeout, ^C), the test left
  // the file system frozen, its serve and anything touching the run's temp dir (even rm -rf)
  // stuck in uninterruptible sleep until someone ran fsfreeze --unfreeze by hand.
  spawn("sh", ["-c", `sleep 45; fsfreeze --unfreeze '${mnt}' 2>/dev/null`], { detached: true, stdio: "ignore" }).unref();
  const frozen = run("fsfreeze", "--freeze", mnt);
  if (!frozen.ok) {
    console.log(`skipped: fsfreeze failed (${frozen.out})`);
    return;
  }
  cleanups.push(() => void run("fsfreeze", "--unfreeze", mnt));
  await Bun.sleep(3_000); // past a flush

  expect(await greetingAfter(s.smtpPort, 2_000)).not.toBeNull();
  const started = performance.now();
  const health = await fetch(`${s.httpUrl}healthz`, { signal: AbortSignal.timeout(5_000) }).then((r) => r.status, (err: unknown) => String(err));
  expect(health).toBe(503);
  expect(performance.now() - started).toBeLessThan(4_000);

  run("fsfreeze", "--unfreeze", mnt);
  expect(await greetingAfter(s.smtpPort, 5_000)).not.toBeNull();
  expect(await s.stop("SIGTERM")).toBe(0);
}, 60_000);
