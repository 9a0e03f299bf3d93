/**
 * A burst of stats requests shares one snapshot (src/http/coalesce.ts): through the real HTTP
 * server on a real SQLite file. The status source counts the snapshots (each one reads the rules
 * status once), so the test says how many ran, not how long they took.
 */
import { afterEach, beforeEach, expect, test } from "bun:test";
import { coalesced } from "../../src/http/coalesce.ts";
import type { HttpServer } from "../../src/http/server.ts";
import { addMessage, makeFixture, startServer, type Fixture } from "./fixture.ts";

let fx: Fixture;
let server: HttpServer;
let snapshots = 0;

beforeEach(async () => {
  fx = makeFixture();
  const rules = fx.status.rules;
  snapshots = 0;
  fx.status.rules = () => {
    snapshots++;
    return rules();
  };
  server = await startServer(fx);
});

afterEach(async () => {
  await server.stop();
  fx.cleanup();
});

const url = (path: string): URL => new URL(path, server.url);

test("30 requests at once for /stats.json and /stats share a few snapshots, not one each", async () => {
  addMessage(fx.db, { subject: "one" });
  const replies = await Promise.all(Array.from({ length: 30 }, (_, i) => fetch(url(i % 2 ? "/stats" : "/stats.json"))));
  expect(replies.map((r) => r.status)).toEqual(Array(30).fill(200));
  const bodies = await Promise.all(replies.map((r) => r.text()));
  const generated = bodies.filter((_, i) => i % 2 === 0).map((b) => (JSON.parse(b) as { generatedAt: string }).generatedAt);
  // Requests that arrive in the same turns of the event loop share; the client's 30 connections
  // reach the server over a few turns, so a few snapshots, never one per request (30 before).
  expect(snapshots).toBeLessThanOrEqual(6);
  expect(new Set(generated).size).toBeLessThanOrEqual(snapshots);
  const totals = JSON.parse(bodies[0] as string) as { totals: { today: { received: number } } };
  expect(totals.totals.today.received).toBe(1);
});

test("a request after a snapshot was taken gets a new one: what was committed before it asked is in it", async () => {
  const first = (await (await fetch(url("/stats.json"))).json()) as { totals: { today: { received: number } } };
  expect(first.totals.today.received).toBe(0);
  addMessage(fx.db, { subject: "after the first snapshot" });
  const second = (await (await fetch(url("/stats.json"))).json()) as { totals: { today: { received: number } } };
  expect(second.totals.today.received).toBe(1);
  expect(snapshots).toBe(2);
});

test("/metrics: a burst of scrapes renders one exposition", async () => {
  const bodies = await Promise.all(Array.from({ length: 10 }, () => fetch(url("/metrics")).then((r) => r.text())));
  expect(bodies[0]).toContain("mailgw_");
  expect(snapshots).toBeLessThanOrEqual(3);
  expect(new Set(bodies).size).toBeLessThanOrEqual(snapshots);
});

test("coalesced: callers before the start share; a throw rejects them all; the next call computes again", async () => {
  let runs = 0;
  let fail = true;
  const get = coalesced(() => {
    runs++;
    if (fail) throw new Error("database is locked");
    return runs;
  });
  const failing = await Promise.allSettled([get(), get(), get()]);
  expect(failing.map((r) => r.status)).toEqual(["rejected", "rejected", "rejected"]);
  expect(runs).toBe(1);
  fail = false;
  expect(await Promise.all([get(), get()])).toEqual([2, 2]);
  expect(await get()).toBe(3);
});
