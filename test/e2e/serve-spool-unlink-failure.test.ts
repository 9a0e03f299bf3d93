/**
 * A delivered message's spool file whose removal fails for a moment (the spool directory made
 * read-only or immutable by an admin's script, a permission slip while restoring) must be removed
 * once it can be, while serve runs. It was removed once, right after the result's commit; a
 * failure was only logged ("delivery attempt error") and the file stayed in the spool until the
 * next restart's recovery — on a gateway that runs for months, for months, one per message that
 * went out meanwhile. chattr +i stands in for the read-only directory (root ignores modes).
 * Needs root and chattr on the temp dir's file system: elsewhere the test prints why it is skipped.
 */
import { afterEach, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { relayVars, startRelay, waitFor } from "../delivery/helpers.ts";
import { RawClient, greet, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { queueList, serveDir, startServe, until } from "../smtp/serve-process.ts";

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

test("spool files whose removal failed after delivery are removed once the directory is writable again", async () => {
  const relay = await startRelay();
  cleanups.push(() => relay.close());
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), `domains: [company.com]
default: { action: forward, forward_to: inbox@elsewhere.example, category: default }
rules: []
`);
  const spoolDir = join(dir, "data", "spool");
  const s = await startServe("source", dir, relayVars(relay));
  cleanups.push(async () => {
    if (s.proc.exitCode === null) await s.stop("SIGKILL");
  });
  relay.dataReplyDelayMs = 2_000; // the relay holds its reply while the directory becomes immutable
  const c = await RawClient.connect(s.smtpPort);
  await greet(c);
  for (let i = 0; i < 3; i++) expect(await sendMail(c, "b@company.com", simpleMessage(`go ${i}`))).toStartWith("250 2.0.0");
  c.end();
  await waitFor(() => relay.received.length === 3, 15_000, "the relay has the three messages");
  const locked = spawnSync("chattr", ["+i", spoolDir], { encoding: "utf8" });
  if (locked.status !== 0) return void console.log(`skipped: chattr +i failed here (${locked.stderr.trim()}); run as root on ext4`);
  let unlocked = false;
  const unlock = () => void (unlocked || spawnSync("chattr", ["-i", spoolDir]), (unlocked = true));
  cleanups.push(unlock);
  await until("the three delivered", async () => (await queueList(dir, "delivered")).length === 3, 15_000);
  await Bun.sleep(500);
  const spooled = () => readdirSync(spoolDir).filter((n) => n.endsWith(".eml"));
  expect(spooled()).toHaveLength(3); // could not be removed meanwhile
  unlock();
  await waitFor(() => spooled().length === 0, 20_000, "the spool files removed").catch(() => undefined);
  expect(spooled()).toEqual([]);
  expect(relay.received).toHaveLength(3); // removed, not sent again
  expect(await s.stop("SIGTERM")).toBe(0);
}, 60_000);
