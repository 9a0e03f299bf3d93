/**
 * A delivery that kills serve (SPEC §5: at-least-once across crashes, kill -9 included) must not
 * keep killing it. The kernel's OOM killer ends serve in the middle of a webhook post of a big
 * message on a small VM; systemd restarts it, and the delivery, left `delivering`, was made due
 * at once with its attempt count still 0 — so every restart died within seconds, receiving no
 * mail, and QUEUE_MAX_AGE_HOURS never ended it (it is checked only after an attempt finishes).
 * Here kill -9 during the relay's DATA stands in for the OOM kill: the first interruption is
 * retried at once, one interrupted again waits the backoff, and one too old becomes failed.
 * The start-up line naming a webhook post interrupted again shows its URL without the query, as
 * every other line does (it showed `?token=…`, and the attempt row kept it).
 */
import { afterEach, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { relayVars, startRelay, waitFor, type ScriptedRelay } from "../delivery/helpers.ts";
import { greet, RawClient, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { queueList, serveDir, startServe, until, type ServeProcess } from "../smtp/serve-process.ts";

const RULES = `domains: [company.com]
default: { action: forward, forward_to: inbox@elsewhere.example, category: default }
rules: []
`;

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

async function serve(dir: string, relay: ScriptedRelay, extra: Record<string, string>): Promise<ServeProcess> {
  const s = await startServe("source", dir, relayVars(relay, extra));
  cleanups.push(async () => {
    if (s.proc.exitCode === null) await s.stop("SIGKILL");
  });
  return s;
}

/** Starts serve, waits until the relay holds the forward's DATA (attempt number `attempt`), kills it. */
async function killDuringDelivery(dir: string, relay: ScriptedRelay, extra: Record<string, string>, attempt: number, send: boolean): Promise<string | null> {
  const s = await serve(dir, relay, extra);
  let id: string | null = null;
  if (send) {
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    const reply = await sendMail(c, "b@company.com", simpleMessage("forward me"));
    expect(reply).toStartWith("250 2.0.0");
    id = reply.split(" ").pop() ?? "";
    c.end();
  }
  await waitFor(() => relay.mailFroms.length >= attempt, 15_000, `attempt ${attempt} reached the relay`);
  await until("the forward is being delivered", async () => (await queueList(dir)).some((e) => e.state === "delivering"), 15_000);
  await s.stop("SIGKILL");
  return id;
}

test("a forward interrupted by two crashes in a row is not attempted at once by the next start: it waits the backoff", async () => {
  const relay = await startRelay();
  cleanups.push(() => relay.close());
  relay.mode = "stall";
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), RULES);
  const extra = { QUEUE_RETRY_BASE_SECONDS: "60" };

  const id = await killDuringDelivery(dir, relay, extra, 1, true);
  // The first interruption: tried again as soon as serve starts (the crash may have had nothing to do with it).
  await killDuringDelivery(dir, relay, extra, 2, false);

  const third = await serve(dir, relay, extra);
  const line = await third.waitForLog((l) => l.msg === "delivery interrupted by a crash again: next attempt after a backoff");
  expect(line.id).toBe(id);
  expect(line.attempt).toBe(2);
  const wait = Date.parse(String(line.next_attempt)) - Date.now();
  expect(wait).toBeGreaterThan(60_000); // attempt 2's backoff: 120 s ± 20%
  await Bun.sleep(2_000);
  expect(relay.mailFroms).toHaveLength(2);
  const [entry] = await queueList(dir);
  expect(entry?.state).toBe("deferred");
  expect(entry?.attempts).toBe(2);
  expect(entry?.lastError).toContain("attempt interrupted");
  expect(third.proc.exitCode).toBeNull();
  expect(await third.stop("SIGTERM")).toBe(0);
}, 90_000);

test("a forward interrupted again once older than QUEUE_MAX_AGE_HOURS becomes failed at the next start", async () => {
  const relay = await startRelay();
  cleanups.push(() => relay.close());
  relay.mode = "stall";
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), RULES);
  const extra = { QUEUE_MAX_AGE_HOURS: "0.001" }; // 3.6 s

  const id = await killDuringDelivery(dir, relay, extra, 1, true);
  await killDuringDelivery(dir, relay, extra, 2, false);
  await Bun.sleep(4_000);

  const third = await serve(dir, relay, extra);
  const line = await third.waitForLog((l) => l.msg === "failed");
  expect(line.id).toBe(id);
  expect(String(line.error)).toContain("gave up after 0.001 h (QUEUE_MAX_AGE_HOURS): attempt interrupted");
  await Bun.sleep(1_000);
  expect(relay.mailFroms).toHaveLength(2);
  const [entry] = await queueList(dir, "failed");
  expect(entry?.id).toBe(id ?? "");
  expect(entry?.attempts).toBe(2);
  expect(await third.stop("SIGTERM")).toBe(0);
}, 90_000);

test("a webhook post interrupted again: the start-up line names its URL without the query (a token), as every other line", async () => {
  let posts = 0;
  const hook = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    idleTimeout: 0,
    async fetch(req) {
      await req.arrayBuffer();
      posts++;
      return new Promise<Response>(() => undefined); // killed while it waits
    },
  });
  cleanups.push(() => hook.stop(true));
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), `domains: [company.com]
default: { action: webhook, url: "http://127.0.0.1:${hook.port}/hook?token=s3cr3t", category: default }
rules: []
`);
  for (const attempt of [1, 2]) {
    const s = await startServe("source", dir, {});
    cleanups.push(async () => {
      if (s.proc.exitCode === null) await s.stop("SIGKILL");
    });
    if (attempt === 1) {
      const c = await RawClient.connect(s.smtpPort);
      await greet(c);
      expect(await sendMail(c, "b@company.com", simpleMessage("post me"))).toStartWith("250 2.0.0");
      c.end();
    }
    await waitFor(() => posts >= attempt, 15_000, `post ${attempt} reached the receiver`);
    await s.stop("SIGKILL");
  }
  const third = await startServe("source", dir, {});
  cleanups.push(async () => {
    if (third.proc.exitCode === null) await third.stop("SIGKILL");
  });
  const line = await third.waitForLog((l) => l.msg === "delivery interrupted by a crash again: next attempt after a backoff");
  expect(line.target).toBe(`http://127.0.0.1:${hook.port}/hook`);
  expect(JSON.stringify(third.logs)).not.toContain("s3cr3t");
  expect(await third.stop("SIGTERM")).toBe(0);
}, 90_000);

test("an attempt interrupted by kill -9 counts as deferred in /metrics and stats.json, as one cut off by SIGTERM does", async () => {
  const relay = await startRelay();
  cleanups.push(() => relay.close());
  relay.mode = "stall";
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), RULES);
  await killDuringDelivery(dir, relay, {}, 1, true);

  relay.mode = "ok";
  const s = await serve(dir, relay, {});
  await until("the forward is delivered", async () => (await queueList(dir, "delivered")).length === 1, 15_000);
  const metrics = await (await fetch(`${s.httpUrl}/metrics`)).text();
  // Two attempts (the interrupted one, then the one that went): one deferred, one delivered.
  expect(metrics).toContain(`mailgw_deliveries_total{kind="forward",result="deferred"} 1`);
  expect(metrics).toContain(`mailgw_deliveries_total{kind="forward",result="delivered"} 1`);
  const stats = (await (await fetch(`${s.httpUrl}/stats.json`)).json()) as { totals: { today: { deliveries: { forward: Record<string, number> } } } };
  expect(stats.totals.today.deliveries.forward).toEqual({ delivered: 1, deferred: 1, failed: 0 });
  expect(await s.stop("SIGTERM")).toBe(0);
}, 60_000);
