/**
 * Accounting through the real `mailgw serve`: what /metrics and /stats.json count must agree
 * with the queue (`mailgw queue list`, mailgw_queue_depth) on every path a delivery takes,
 * restarts included. An admin alerting on mailgw_deliveries_total{result="failed"} and reading
 * the per-rule "Failed" column must see every delivery that became `failed`, whichever part of
 * serve failed it (an attempt, the age limit, a suspended relay, recovery at start).
 */
import { afterEach, expect, test } from "bun:test";
import { readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { StatsSnapshot } from "../../src/http/stats-data.ts";
import { greet, RawClient, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { queueList, serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: to-sales, priority: 10, category: sales, action: forward, forward_to: [sales@forward.example], conditions: [{ field: subject, operator: contains, value: fwd }] }
`;

const running: ServeProcess[] = [];
afterEach(async () => {
  for (const s of running.splice(0)) if (s.proc.exitCode === null) await s.stop("SIGKILL");
}, 60_000);

async function start(dir: string, env: Record<string, string> = {}): Promise<ServeProcess> {
  const s = await startServe("source", dir, env);
  running.push(s);
  return s;
}

/** The value of one /metrics sample (its full series name, labels included), 0 when absent. */
async function metric(serve: ServeProcess, series: string): Promise<number> {
  const text = await (await fetch(`${serve.httpUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

async function stats(serve: ServeProcess): Promise<StatsSnapshot> {
  return (await (await fetch(`${serve.httpUrl}/stats.json`)).json()) as StatsSnapshot;
}

test("a delivery failed at start because its spool file is gone is counted failed once, as the queue shows it", async () => {
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), RULES);
  // No relay: the forward is held (nothing attempts it), so only recovery can fail it.
  const first = await start(dir);
  const c = await RawClient.connect(first.smtpPort);
  await greet(c);
  const reply = await sendMail(c, "b@company.com", simpleMessage("fwd please"));
  c.end();
  expect(reply).toStartWith("250 2.0.0 Queued as ");
  const id = reply.split(" ").pop() ?? "";
  expect(await first.stop("SIGTERM")).toBe(0);

  // The file goes some other way (a data dir restored from a backup, a hand-deleted file).
  const spool = join(dir, "data", "spool");
  expect(readdirSync(spool)).toContain(`${id}.eml`);
  rmSync(join(spool, `${id}.eml`));

  const second = await start(dir);
  const listed = await queueList(dir);
  expect(listed.map((e) => [e.id, e.state])).toEqual([[id, "failed"]]);
  expect(await metric(second, 'mailgw_queue_depth{state="failed"}')).toBe(1);
  expect(await metric(second, 'mailgw_deliveries_total{kind="forward",result="failed"}')).toBe(1);
  expect(await metric(second, 'mailgw_deliveries_by_rule_total{kind="forward",result="failed",rule="to-sales",category="sales"}')).toBe(1);
  const s = await stats(second);
  expect(s.totals.today.deliveries.forward.failed).toBe(1);
  expect(s.deliveriesByRule.map((r) => [r.rule, r.today.failed])).toEqual([["to-sales", 1]]);
  expect(await second.stop("SIGTERM")).toBe(0);

  // The next start finds it failed already: not failed (nor counted) again.
  const third = await start(dir);
  expect(await metric(third, 'mailgw_deliveries_total{kind="forward",result="failed"}')).toBe(1);
  expect(await metric(third, 'mailgw_queue_depth{state="failed"}')).toBe(1);
  expect(await third.stop("SIGTERM")).toBe(0);
}, 60_000);
