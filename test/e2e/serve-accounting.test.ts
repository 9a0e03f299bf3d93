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
import { Database } from "bun:sqlite";
import type { StatsSnapshot } from "../../src/http/stats-data.ts";
import { relayVars, startRelay, waitFor } from "../delivery/helpers.ts";
import { greet, RawClient, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { queueList, serveDir, startServe, until, type ServeProcess } from "../smtp/serve-process.ts";

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

const MIXED_RULES = (hook: string): string => `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: spam, priority: 100, category: spam, action: reject, conditions: [{ field: subject, operator: contains, value: "[SPAM]" }] }
  - { name: noise, priority: 90, category: noise, action: drop, conditions: [{ field: subject, operator: contains, value: "noise" }] }
  - { name: fok, priority: 80, category: sales, action: forward, forward_to: [ok@fwd.example], conditions: [{ field: subject, operator: contains, value: "fok" }] }
  - { name: fperm, priority: 79, category: sales, action: forward, forward_to: [perm@fwd.example], conditions: [{ field: subject, operator: contains, value: "fperm" }] }
  - { name: keep, priority: 70, category: kept, action: forward, archive: true, forward_to: [kept@fwd.example], conditions: [{ field: subject, operator: contains, value: "keep" }] }
  - { name: hok, priority: 60, category: hooks, action: webhook, url: "${hook}/ok", conditions: [{ field: subject, operator: contains, value: "hok" }] }
  - { name: hbad, priority: 59, category: hooks, action: webhook, url: "${hook}/bad", archive: true, conditions: [{ field: subject, operator: contains, value: "hbad" }] }
`;
const MIXED_KINDS = ["[SPAM]", "noise", "fok", "fperm", "keep", "hok", "hbad", "plain"] as const;

/** A webhook receiver: /ok answers 200 (or hangs while `stall`), /bad answers 400. */
function hookReceiver() {
  const got: string[] = [];
  const r = { got, stall: true, url: "", stop: () => undefined as void };
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    idleTimeout: 0,
    async fetch(req) {
      await req.text();
      const path = new URL(req.url).pathname;
      if (path === "/bad") return new Response("no", { status: 400 });
      if (r.stall) return new Promise<Response>(() => undefined);
      got.push(path);
      return new Response("ok");
    },
  });
  r.url = `http://127.0.0.1:${server.port}`;
  r.stop = () => void server.stop(true);
  return r;
}

test("mixed mail, kill -9 with deliveries under way, restart: every figure counts each message and delivery once", async () => {
  const relay = await startRelay();
  relay.refuseRecipients = ["perm@fwd.example"];
  relay.mode = "stall";
  const hook = hookReceiver();
  try {
    const dir = serveDir();
    writeFileSync(join(dir, "rules.yaml"), MIXED_RULES(hook.url));
    const env = { ...relayVars(relay), RATE_LIMIT_MAX: "100000", QUEUE_RETRY_BASE_SECONDS: "0.1" };
    const first = await start(dir, env);
    const accepted = new Map<string, string>();
    let rejected = 0;
    const c = await RawClient.connect(first.smtpPort);
    await greet(c);
    for (let i = 0; i < 24; i++) {
      const kind = MIXED_KINDS[i % MIXED_KINDS.length] as string;
      const reply = await sendMail(c, "b@company.com", simpleMessage(`${kind} n=${i}`));
      const id = /^250 2\.0\.0 Queued as (\S+)/.exec(reply)?.[1];
      if (id) accepted.set(id, kind);
      else if (reply.startsWith("550 5.7.1")) rejected++;
      else throw new Error(`unexpected reply ${reply}`);
    }
    c.end();
    // Forwards and webhook posts are under way (relay and receiver hang) when serve is killed.
    await until("deliveries under way", async () => (await queueList(dir)).filter((e) => e.state === "delivering").length >= 2, 15_000);
    first.proc.kill("SIGKILL");
    await first.exited();
    relay.mode = "ok";
    hook.stall = false;

    const second = await start(dir, env);
    const db = new Database(join(dir, "data", "mail-gateway.db"), { readonly: true });
    try {
      const open = () => db.query<{ n: number }, []>("SELECT count(*) AS n FROM deliveries WHERE state NOT IN ('delivered', 'failed')").get()?.n;
      await waitFor(() => open() === 0, 20_000, "every delivery final");
      const rows = (state: string, kind: string) =>
        db.query<{ n: number }, [string, string]>("SELECT count(*) AS n FROM deliveries WHERE state = ? AND kind = ?").get(state, kind)?.n ?? 0;
      const per = (k: string) => [...accepted.values()].filter((v) => v === k).length;
      const s = await stats(second);
      const t = s.totals.today;
      // Received once each, recovery or not: the 250s plus the rule rejects.
      expect(t.received).toBe(accepted.size + rejected);
      expect(await metric(second, "mailgw_messages_received_total")).toBe(t.received);
      expect(db.query<{ n: number }, []>("SELECT count(*) AS n FROM messages").get()?.n).toBe(t.received);
      expect(t.byAction).toEqual({ reject: rejected, archive: per("plain"), forward: per("fok") + per("fperm") + per("keep"), webhook: per("hok") + per("hbad"), drop: per("noise") });
      // Each delivery counted delivered (or failed) once, though the interrupted ones were sent again.
      for (const kind of ["forward", "webhook"] as const) {
        expect(t.deliveries[kind].delivered).toBe(rows("delivered", kind));
        expect(t.deliveries[kind].failed).toBe(rows("failed", kind));
        expect(await metric(second, `mailgw_deliveries_total{kind="${kind}",result="delivered"}`)).toBe(rows("delivered", kind));
      }
      expect(rows("delivered", "forward")).toBe(per("fok") + per("keep"));
      expect(rows("failed", "forward")).toBe(per("fperm"));
      expect(rows("delivered", "webhook")).toBe(per("hok"));
      expect(rows("failed", "webhook")).toBe(per("hbad"));
      // The queue as /stats.json, /metrics and `queue list` show it.
      const listed = await queueList(dir);
      expect(listed.filter((e) => e.state === "failed").length).toBe(s.queue.depth.failed);
      expect(listed.length).toBe(Object.values(s.queue.depth).reduce((a, b) => a + b, 0));
      expect(await metric(second, 'mailgw_queue_depth{state="failed"}')).toBe(s.queue.depth.failed);
      // What left the gateway, and the archive: once per message that asked for it.
      expect(new Set(relay.received.map((m) => m.to.join())).size).toBe(2);
      expect(hook.got.length).toBeGreaterThanOrEqual(per("hok"));
      const archive = join(dir, "data", "archive");
      const files = readdirSync(archive).flatMap((d) => readdirSync(join(archive, d)));
      expect(files.length).toBe(per("plain") + per("keep") + per("hbad"));
      // The archived count is the files' count, archive: true copies included.
      expect(t.archived).toBe(files.length);
      expect(await metric(second, "mailgw_messages_archived_total")).toBe(files.length);
      expect(s.receivedPerDay.at(-1)?.received).toBe(t.received);
    } finally {
      db.close();
    }
    expect(await second.stop("SIGTERM")).toBe(0);
  } finally {
    hook.stop();
    await relay.close();
  }
}, 60_000);
