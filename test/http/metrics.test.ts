/**
 * /metrics is valid Prometheus text exposition, checked line by line: every sample belongs to a
 * family declared with # HELP and # TYPE, label syntax and values parse, histograms are
 * cumulative with a +Inf bucket equal to _count, and the numbers match the database.
 */
import { afterEach, beforeEach, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { HttpServer } from "../../src/http/server.ts";
import { bumpCounter } from "../../src/store/counters.ts";
import { find, parseExposition } from "../helpers/exposition.ts";
import { REPO_ROOT } from "../packaging/binary.ts";
import { addAttempt, addDelivery, addMessage, addSession, get, makeFixture, startServer, type Fixture } from "./fixture.ts";

let fx: Fixture;
let server: HttpServer;
beforeEach(async () => {
  fx = makeFixture();
  server = await startServer(fx);
}, 60_000);
afterEach(async () => {
  await server.stop();
  fx.cleanup();
}, 60_000);

test("exposition is valid and the numbers match the database", async () => {
  addMessage(fx.db, { action: "archive" });
  addMessage(fx.db, { action: "reject", category: "spam" });
  addMessage(fx.db, { action: "reject", category: "spam", at: Date.now() - 90 * 86_400_000 }); // all-time counters include old days
  const fwd = addMessage(fx.db, { action: "forward", category: "sales" });
  addSession(fx.db, true);
  addSession(fx.db, false);
  addSession(fx.db, false);
  const d = addDelivery(fx.db, fwd, { state: "deferred" });
  addAttempt(fx.db, d, "forward", 40, "deferred"); // ≤ 0.05 s
  addAttempt(fx.db, d, "forward", 700, "deferred"); // ≤ 1 s
  addAttempt(fx.db, d, "forward", 200_000, "delivered"); // > 120 s: only +Inf
  bumpCounter(fx.db, Date.now(), "failed:forward", { rule: "to-sales", category: "sales" }); // its attempt is not in the histogram
  const res = await get(server, "/metrics");
  expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
  const { samples, types } = parseExposition(await res.text());

  expect(types.get("mailgw_messages_total")).toBe("counter");
  expect(types.get("mailgw_delivery_duration_seconds")).toBe("histogram");
  expect(types.get("mailgw_queue_depth")).toBe("gauge");
  expect(find(samples, "mailgw_messages_received_total")).toBe(4);
  expect(find(samples, "mailgw_messages_total", { action: "reject", category: "spam" })).toBe(2);
  expect(find(samples, "mailgw_messages_total", { action: "forward", category: "sales" })).toBe(1);
  expect(find(samples, "mailgw_messages_total", { action: "drop" })).toBe(0);
  expect(find(samples, "mailgw_smtp_sessions_total", { tls: "true" })).toBe(1);
  expect(find(samples, "mailgw_smtp_sessions_total", { tls: "false" })).toBe(2);
  expect(find(samples, "mailgw_queue_depth", { state: "deferred" })).toBe(1);
  expect(find(samples, "mailgw_queue_depth", { state: "queued" })).toBe(0);
  expect(find(samples, "mailgw_deliveries_total", { kind: "forward", result: "deferred" })).toBe(2);
  expect(find(samples, "mailgw_deliveries_total", { kind: "forward", result: "delivered" })).toBe(1);
  expect(types.get("mailgw_deliveries_by_rule_total")).toBe("counter");
  expect(find(samples, "mailgw_deliveries_by_rule_total", { kind: "forward", result: "failed", rule: "to-sales", category: "sales" })).toBe(1);
  expect(find(samples, "mailgw_deliveries_by_rule_total", { kind: "forward", result: "deferred", rule: "", category: "default" })).toBe(2);
  expect(find(samples, "mailgw_rules_reload_total", { result: "success" })).toBe(0);
  expect(find(samples, "mailgw_build_info")).toBe(1);
  expect(samples.find((s) => s.name === "mailgw_build_info")?.labels.version).toMatch(/^\d+\.\d+\.\d+/);
  expect(find(samples, "mailgw_uptime_seconds")).toBeGreaterThan(3000);

  const buckets = samples.filter((s) => s.name === "mailgw_delivery_duration_seconds_bucket" && s.labels.kind === "forward");
  expect(buckets.at(-1)?.labels.le).toBe("+Inf");
  for (let i = 1; i < buckets.length; i++) expect(buckets[i]?.value ?? 0).toBeGreaterThanOrEqual(buckets[i - 1]?.value ?? 0);
  expect(find(samples, "mailgw_delivery_duration_seconds_bucket", { kind: "forward", le: "0.05" })).toBe(1);
  expect(find(samples, "mailgw_delivery_duration_seconds_bucket", { kind: "forward", le: "1" })).toBe(2);
  expect(find(samples, "mailgw_delivery_duration_seconds_bucket", { kind: "forward", le: "120" })).toBe(2);
  expect(find(samples, "mailgw_delivery_duration_seconds_bucket", { kind: "forward", le: "+Inf" })).toBe(3);
  expect(find(samples, "mailgw_delivery_duration_seconds_count", { kind: "forward" })).toBe(3);
  expect(find(samples, "mailgw_delivery_duration_seconds_sum", { kind: "forward" })).toBeCloseTo(200.74, 5);
  expect(find(samples, "mailgw_delivery_duration_seconds_count", { kind: "webhook" })).toBe(0);
});

test("the histogram only adds attempts recorded since the last scrape", async () => {
  const d = addDelivery(fx.db, addMessage(fx.db, { action: "webhook" }), { kind: "webhook" });
  addAttempt(fx.db, d, "webhook", 100, "deferred");
  const first = parseExposition(await (await get(server, "/metrics")).text()).samples;
  expect(find(first, "mailgw_delivery_duration_seconds_count", { kind: "webhook" })).toBe(1);
  const again = parseExposition(await (await get(server, "/metrics")).text()).samples;
  expect(find(again, "mailgw_delivery_duration_seconds_count", { kind: "webhook" })).toBe(1);
  addAttempt(fx.db, d, "webhook", 300, "delivered");
  const later = parseExposition(await (await get(server, "/metrics")).text()).samples;
  expect(find(later, "mailgw_delivery_duration_seconds_count", { kind: "webhook" })).toBe(2);
  expect(find(later, "mailgw_delivery_duration_seconds_bucket", { kind: "webhook", le: "0.25" })).toBe(1);
  expect(find(later, "mailgw_delivery_duration_seconds_bucket", { kind: "webhook", le: "0.5" })).toBe(2);
});

test("a counter is never exported lower than before (the intake takes back counts of a 451'd group)", async () => {
  addMessage(fx.db, { action: "archive", category: "default" });
  addMessage(fx.db, { action: "archive", category: "default" });
  const received = async () => find(parseExposition(await (await get(server, "/metrics")).text()).samples, "mailgw_messages_received_total", {});
  const before = (await received()) ?? -1;
  expect(before).toBeGreaterThanOrEqual(2);
  bumpCounter(fx.db, Date.now(), "received", {}, -1); // what intake's fail() does after a commit
  expect(await received()).toBe(before);
  bumpCounter(fx.db, Date.now(), "received", {}, 2);
  expect(await received()).toBe(before + 1);
});

test("the parser used here rejects invalid exposition (so the test above means something)", () => {
  expect(() => parseExposition("mailgw_x 1\n")).toThrow("sample without # TYPE");
  expect(() => parseExposition('# HELP a b\n# TYPE a gauge\na{l="x} 1\n')).toThrow("bad labels");
  expect(() => parseExposition("# HELP a b\n# TYPE a gauge\na one\n")).toThrow("bad value");
});

test("the README's metric table names exactly the families /metrics exports", async () => {
  const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("### Monitoring with Prometheus"), readme.indexOf("### systemd"));
  const documented = new Set([...section.matchAll(/^\|(.*?)\|/gm)].flatMap((m) => [...(m[1] ?? "").matchAll(/`(mailgw_[a-z_]+)`/g)].map((n) => n[1])));
  const { types } = parseExposition(await (await get(server, "/metrics")).text());
  expect([...documented].sort()).toEqual([...types.keys()].sort());
});
