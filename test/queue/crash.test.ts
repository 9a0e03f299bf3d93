/**
 * At-least-once across crashes: a worker process is killed with SIGKILL while the relay holds
 * its deliveries mid-DATA (rows `delivering`); after a restart every one is delivered.
 * A duplicate is allowed, a loss is not.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import type { Subprocess } from "bun";
import { deliveryOf, makeEnv, relayVars, seedDelivery, startRelay, waitFor, type TestEnv } from "../delivery/helpers.ts";

const CHILD = resolve(import.meta.dir, "worker-child.ts");

function spawnWorker(t: TestEnv): Subprocess<"ignore", "pipe", "pipe"> {
  return Bun.spawn([process.execPath, CHILD], {
    cwd: t.dir,
    env: { PATH: process.env.PATH ?? "", ...t.env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

describe("kill -9 during delivery", () => {
  test("deliveries interrupted mid-DATA are delivered after a restart", async () => {
    const relay = await startRelay();
    cleanups.push(() => relay.close());
    relay.mode = "stall";
    const t = makeEnv(relayVars(relay));
    const ids = Array.from({ length: 5 }, (_, i) => seedDelivery(t, { raw: `From: a@example.org\r\nSubject: crash-${i}\r\n\r\nbody ${i}\r\n` }));
    const first = spawnWorker(t);
    cleanups.push(() => void first.kill(9));
    await waitFor(() => ids.every((id) => deliveryOf(t.db, id).state === "delivering"), 15_000, "all delivering");
    // Claimed is not yet mid-DATA (a forward may still wait for its connection): the relay holds each one's DATA.
    await waitFor(() => relay.stalled === ids.length, 15_000, "each one's DATA held by the relay");
    first.kill(9);
    await first.exited;
    expect(first.signalCode).toBe("SIGKILL");
    expect(ids.every((id) => deliveryOf(t.db, id).state === "delivering")).toBe(true);
    expect(relay.received).toHaveLength(0);

    relay.mode = "ok";
    const second = spawnWorker(t);
    cleanups.push(async () => {
      second.kill("SIGTERM");
      await second.exited;
    });
    await waitFor(() => ids.every((id) => deliveryOf(t.db, id).state === "delivered"), 15_000, "delivered after restart");
    const subjects = new Set(relay.received.map((m) => /Subject: (crash-\d)/.exec(m.data.toString())?.[1]));
    expect([...subjects].sort()).toEqual(ids.map((_, i) => `crash-${i}`));
    const attempts = t.db.query<{ n: number }, []>(`SELECT count(*) AS n FROM delivery_attempts WHERE ok = 1`).get();
    expect(attempts?.n).toBe(ids.length);
  }, 60_000);
});
