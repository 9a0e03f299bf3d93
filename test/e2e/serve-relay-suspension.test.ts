/**
 * A relay that fails itself (refuses every connection, answers 421, rejects the password) is
 * suspended by the real `mailgw serve`, as Postfix suspends a dead destination: the forwards that
 * become due meanwhile are not attempted (no connection, no attempt counted), one probe goes when
 * the suspension ends, and once the relay answers again every waiting forward is due at once.
 * Before, each forward opened its own connection (and sent the password) on its own backoff, and
 * after the relay came back the backlog trickled out over up to an hour.
 * A refusal of one message (550 to RCPT) is that message's problem and suspends nothing.
 */
import { expect, test } from "bun:test";
import { createServer, type Server, type Socket } from "node:net";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { relayVars, startRelay, waitFor, type ScriptedRelay } from "../delivery/helpers.ts";
import { mailgwQueue, queueList, serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";
import { freePorts } from "../packaging/binary.ts";
import { logged, rows, send, SUSPENDED } from "./relay-suspension-helpers.ts";

/** Ports of this file (the range the test run gave it). */
// Fixed for the file (serve restarts on them, a relay comes up later on its port), picked free at load.
const [relayPort, smtpPort, httpPort] = await freePorts(3);
const PORTS = { relay: relayPort ?? 0, smtp: smtpPort ?? 0, http: httpPort ?? 0 };

const RULES = `domains: [company.com]
rules:
  - name: refused
    priority: 5
    category: sales
    action: forward
    forward_to: [nobody@forward.example]
    conditions:
      - { field: subject, operator: contains, value: refused }
  - name: forward
    priority: 10
    category: sales
    action: forward
    forward_to: [sales@forward.example]
    conditions:
      - { field: subject, operator: contains, value: fwd }
`;

/** A "relay" that is down: each connection is counted, then answered 421 or closed at once. */
async function deadRelay(port: number, answer: "421" | "close"): Promise<{ accepts: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const dead = { accepts: 0, close: async () => undefined as void };
  const server: Server = createServer((s) => {
    dead.accepts++;
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => undefined);
    if (answer === "421") s.end("421 4.3.2 relay.test service not available, closing channel\r\n");
    else s.destroy();
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  dead.close = () => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  });
  return dead;
}

async function startGateway(vars: Record<string, string>): Promise<ServeProcess> {
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), RULES);
  writeFileSync(join(dir, ".env"), `${Object.entries(vars).map(([k, v]) => `${k}=${v}`).join("\n")}\n`);
  return startServe("source", dir, { SMTP_PORT: String(PORTS.smtp), HTTP_PORT: String(PORTS.http) });
}

function subjectsReceived(relay: ScriptedRelay): string[] {
  return relay.received.map((m) => /^Subject: (.*)$/m.exec(m.data.toString("latin1"))?.[1]?.trim() ?? "").sort();
}


for (const answer of ["421", "close"] as const) {
  test(`relay down (${answer === "421" ? "421 at the greeting" : "connection closed at once"}): 30 forwards make a handful of connections, then all are delivered once it is back`, async () => {
    let dead = await deadRelay(PORTS.relay, answer);
    const serve = await startGateway({ ...relayVars({ port: PORTS.relay }), QUEUE_RETRY_BASE_SECONDS: "1" });
    let relay: ScriptedRelay | null = null;
    try {
      const subjects = Array.from({ length: 30 }, (_, i) => `fwd ${String(i).padStart(2, "0")}`);
      await send(serve, subjects, 100); // 3 s: the relay is suspended after the first
      await serve.waitForLog((l) => l.msg === "relay suspended: forwards wait, one is tried when the suspension ends");
      await Bun.sleep(1000);
      // Before: one connection (and one attempt) per forward, and again at each one's retry.
      console.error(`dead relay: ${dead.accepts} connections`);
      expect(dead.accepts).toBeLessThanOrEqual(6);
      const queued = rows(serve);
      expect(queued).toHaveLength(30);
      expect(queued.filter((r) => r.attempts > 1)).toEqual([]);
      expect(queued.filter((r) => r.state !== "deferred" && r.state !== "delivering")).toEqual([]);
      const waiting = queued.filter((r) => r.state === "deferred" && r.attempts === 0);
      expect(waiting.length).toBeGreaterThan(20);
      for (const r of waiting) expect(r.last_error ?? "").toStartWith("relay suspended: ");
      expect(logged(serve, "relay suspended: forwards wait, one is tried when the suspension ends")).toHaveLength(1);

      await dead.close();
      dead = { accepts: 0, close: async () => undefined };
      relay = await startRelay({ port: PORTS.relay });
      const back = Date.now();
      await waitFor(() => relay !== null && relay.received.length >= 30, 20_000, "all 30 forwards at the relay");
      // The next probe comes at most 8 s later (base 1 s, doubled per failed probe); the rest follow it at once.
      expect(Date.now() - back).toBeLessThan(12_000);
      await Bun.sleep(500);
      expect(subjectsReceived(relay)).toEqual(subjects); // each exactly once
      expect(rows(serve).filter((r) => r.state !== "delivered")).toEqual([]);
      expect(logged(serve, "relay is back: the suspension is over, deferred forwards are due now")).toHaveLength(1);
      expect(relay.connections).toBeLessThanOrEqual(9);
    } finally {
      expect(await serve.stop()).toBe(0);
      await dead.close();
      await relay?.close();
    }
  }, 60_000);
}

test("a 550 to RCPT for one forward suspends nothing: the others flow", async () => {
  const relay = await startRelay({ port: PORTS.relay });
  relay.refuseRecipients = ["nobody@forward.example"];
  const serve = await startGateway({ ...relayVars(relay), QUEUE_RETRY_BASE_SECONDS: "1" });
  try {
    await send(serve, ["refused 1", "fwd 1", "fwd 2", "refused 2", "fwd 3"]);
    await waitFor(() => rows(serve).every((r) => r.state === "delivered" || r.state === "failed"), 10_000, "every forward final");
    expect(rows(serve).map((r) => [r.subject, r.state, r.attempts])).toEqual([
      ["refused 1", "failed", 1], ["fwd 1", "delivered", 1], ["fwd 2", "delivered", 1], ["refused 2", "failed", 1], ["fwd 3", "delivered", 1],
    ]);
    expect(logged(serve, "relay suspended: forwards wait, one is tried when the suspension ends")).toEqual([]);
    expect(subjectsReceived(relay)).toEqual(["fwd 1", "fwd 2", "fwd 3"]);
  } finally {
    expect(await serve.stop()).toBe(0);
    await relay.close();
  }
}, 30_000);

// SPEC §5 backoff for the one message a relay (or a proxy before it) drops after its final dot:
// taken for the relay's failure, it suspended the relay and was sent again with every forward
// that lifted the suspension, about once a retry period, stalling the others each time.
test("a connection lost after one message's end of data: that message backs off alone; the relay is not suspended", async () => {
  const relay = await startRelay({ port: PORTS.relay });
  relay.dropWhen = (data) => data.includes("Subject: fwd poison");
  const serve = await startGateway({ ...relayVars(relay), QUEUE_RETRY_BASE_SECONDS: "30" });
  try {
    await send(serve, ["fwd poison", "fwd 1"]);
    await waitFor(() => rows(serve).some((r) => r.subject === "fwd 1" && r.state === "delivered"), 10_000, "the other delivered");
    await send(serve, ["fwd 2", "fwd 3"]);
    await waitFor(() => rows(serve).filter((r) => r.state === "delivered").length === 3, 10_000, "the later ones delivered");
    const poison = rows(serve).find((r) => r.subject === "fwd poison");
    expect(poison).toMatchObject({ state: "deferred", attempts: 1 });
    expect(relay.dropped).toBe(1); // not sent again with the later forwards
    expect(logged(serve, SUSPENDED)).toEqual([]);
    expect(subjectsReceived(relay)).toEqual(["fwd 1", "fwd 2", "fwd 3"]);
  } finally {
    expect(await serve.stop()).toBe(0);
    await relay.close();
  }
}, 30_000);

async function json(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(url);
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

test("wrong password (535): suspended with one log line, shown by /healthz, /stats.json and queue list; queue retry --all lifts it at once", async () => {
  const relay = await startRelay({ port: PORTS.relay });
  // A long backoff: only the admin's retry can make these go within the test.
  const serve = await startGateway({ ...relayVars(relay, { RELAY_SMTP_PASS: "0ld-pa55word" }), QUEUE_RETRY_BASE_SECONDS: "30" });
  try {
    const subjects = Array.from({ length: 10 }, (_, i) => `fwd ${i}`);
    await send(serve, subjects, 100);
    const line = await serve.waitForLog((l) => l.msg === SUSPENDED);
    expect(String(line.reason)).toContain("535");
    await Bun.sleep(1500);
    // Before: one failed login per forward (and again at each retry), which locks Gmail and SES accounts.
    expect(relay.authAttempts.length).toBeLessThanOrEqual(2);
    expect(logged(serve, SUSPENDED)).toHaveLength(1);
    expect(rows(serve).filter((r) => r.attempts > 1)).toEqual([]);
    // Those already handed to the pool's one connection when the login failed share its failure
    // (no login of their own); how many depends on the machine's speed, the rest waited.
    const waiting = rows(serve).filter((r) => r.attempts === 0);
    expect(waiting.length).toBeGreaterThanOrEqual(5);
    const prefix = "relay suspended: the relay refused the login: check RELAY_SMTP_USER and RELAY_SMTP_PASS: EAUTH:";
    for (const r of waiting) expect([r.state, r.last_error?.slice(0, prefix.length)]).toEqual(["deferred", prefix]);

    const health = await json(`${serve.httpUrl}/healthz`);
    expect(health.status).toBe(200);
    expect((health.body.warnings as string[]).filter((w) => w.startsWith("relay suspended since "))).toHaveLength(1);
    const stats = await json(`${serve.httpUrl}/stats.json`);
    const suspended = (stats.body.relay as { suspended: { since: string; until: string; reason: string } | null }).suspended;
    expect(suspended?.reason).toContain("535");
    expect(Date.parse(suspended?.until ?? "") - Date.parse(suspended?.since ?? "")).toBe(30_000);
    const page = await (await fetch(`${serve.httpUrl}/stats`)).text();
    expect(page).toContain("The relay is suspended since");
    const metrics = await (await fetch(`${serve.httpUrl}/metrics`)).text();
    expect(metrics).toContain(`mailgw_relay_suspended_since_seconds ${Math.floor(Date.parse(suspended?.since ?? "") / 1000)}\n`);
    const list = await mailgwQueue(serve.dir, "list");
    expect(list.stdout).toStartWith(`relay 127.0.0.1:${PORTS.relay} suspended since `);
    expect(list.stdout).toContain("535");
    // Where the fix goes: retry for the relay, SIGHUP or a restart for a changed password.
    expect(list.stdout).toContain("mailgw queue retry --all tries it at once; a changed RELAY_* setting (a fixed password) is read on SIGHUP");
    expect(String(line.hint)).toContain("is read on SIGHUP from .env or --env-file, or at a restart");
    expect(page).toContain("queue retry keeps the settings serve has");
    const listed = await queueList(serve.dir);
    expect(listed).toHaveLength(10);

    relay.password = "0ld-pa55word"; // the account's password set back to what mailgw has
    const retried = await mailgwQueue(serve.dir, "retry", "--all");
    expect(retried.code).toBe(0);
    expect(retried.stdout).toContain(`the relay 127.0.0.1:${PORTS.relay} is no longer suspended: serve tries it again now, with the relay settings it has (a RELAY_* setting changed since, such as the password, needs SIGHUP or a restart)`);
    await waitFor(() => relay.received.length >= 10, 5_000, "the 10 forwards at the relay, well before the 30 s suspension ends");
    await Bun.sleep(300);
    expect(subjectsReceived(relay)).toEqual(subjects);
    await serve.waitForLog((l) => l.msg === "relay suspension lifted (mailgw queue retry, or SIGHUP): trying the relay again");
    expect(((await json(`${serve.httpUrl}/healthz`)).body.warnings as string[])).toEqual([]);
    expect(await (await fetch(`${serve.httpUrl}/metrics`)).text()).toContain("mailgw_relay_suspended_since_seconds 0\n");
    expect((await mailgwQueue(serve.dir, "list")).stdout).toBe("queue is empty\n");
  } finally {
    expect(await serve.stop()).toBe(0);
    await relay.close();
  }
}, 60_000);

test("a restart tries the relay once and keeps the suspension if it still fails; SIGHUP lifts it; a restart once fixed delivers", async () => {
  // Nothing listens on the relay's port: connection refused.
  let serve = await startGateway({ ...relayVars({ port: PORTS.relay }), QUEUE_RETRY_BASE_SECONDS: "30" });
  let relay: ScriptedRelay | null = null;
  const restart = () => startServe("source", serve.dir, { SMTP_PORT: String(PORTS.smtp), HTTP_PORT: String(PORTS.http) });
  try {
    await send(serve, ["fwd a", "fwd b", "fwd c"], 200);
    expect(String((await serve.waitForLog((l) => l.msg === SUSPENDED)).reason)).toContain("ECONNREFUSED");
    await waitFor(() => rows(serve).every((r) => r.state === "deferred"), 5_000, "all three deferred");
    expect(await serve.stop()).toBe(0);
    expect((await mailgwQueue(serve.dir, "list")).stdout).toContain(`note: the relay 127.0.0.1:${PORTS.relay} was suspended`);

    // Restarted with the relay still refusing: one forward is tried at once (the probe), the
    // others wait; the suspension goes on with a longer backoff.
    const dead = await deadRelay(PORTS.relay, "421");
    serve = await restart();
    await serve.waitForLog((l) => l.msg === "relay suspended when serve stopped: one forward is tried now, the others wait for it");
    await waitFor(() => dead.accepts === 1 && rows(serve).reduce((n, r) => n + r.attempts, 0) === 2, 5_000, "one probe at start");
    await send(serve, ["fwd d"]);
    await Bun.sleep(1500);
    expect(dead.accepts).toBe(1);
    expect(rows(serve).every((r) => r.state === "deferred")).toBe(true);
    expect(rows(serve).reduce((n, r) => n + r.attempts, 0)).toBe(2);
    expect(rows(serve).find((r) => r.subject === "fwd d")?.attempts).toBe(0);
    await dead.close();

    relay = await startRelay({ port: PORTS.relay });
    serve.proc.kill("SIGHUP"); // the admin fixed the relay; its settings are unchanged
    await waitFor(() => relay !== null && relay.received.length === 4, 5_000, "the 4 forwards at the relay, well before the 60 s suspension ends");
    expect(subjectsReceived(relay)).toEqual(["fwd a", "fwd b", "fwd c", "fwd d"]);
    await serve.waitForLog((l) => l.msg === "relay suspension lifted (mailgw queue retry, or SIGHUP): trying the relay again");
    await relay.close();
    relay = null;

    // Suspended again (relay gone), then fixed and restarted: everything goes at once.
    await send(serve, ["fwd e", "fwd f"], 200);
    await serve.waitForLog((l) => l.msg === SUSPENDED);
    expect(await serve.stop()).toBe(0);
    relay = await startRelay({ port: PORTS.relay });
    serve = await restart();
    await waitFor(() => relay !== null && relay.received.length === 2, 5_000, "the 2 forwards right after the restart");
    expect(subjectsReceived(relay)).toEqual(["fwd e", "fwd f"]);
    await serve.waitForLog((l) => l.msg === "relay is back: the suspension is over, deferred forwards are due now");
  } finally {
    expect(await serve.stop()).toBe(0);
    await relay?.close();
  }
}, 60_000);
