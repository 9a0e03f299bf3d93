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
import { openDatabase } from "../../src/store/db.ts";
import { relayVars, startRelay, waitFor, type ScriptedRelay } from "../delivery/helpers.ts";
import { RawClient, greet, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";

/** Ports of this file (the range the test run gave it). */
const PORTS = { relay: 27010, smtp: 27011, http: 27012 };

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

/** Sends one message per subject over one session, `gapMs` apart. */
async function send(serve: ServeProcess, subjects: string[], gapMs = 0): Promise<void> {
  const c = await RawClient.connect(serve.smtpPort);
  await greet(c);
  for (const subject of subjects) {
    expect(await sendMail(c, "orders@company.com", simpleMessage(subject))).toStartWith("250 2.0.0");
    if (gapMs > 0) await Bun.sleep(gapMs);
  }
  c.end();
}

interface Row {
  subject: string;
  state: string;
  attempts: number;
  last_error: string | null;
}

function rows(serve: ServeProcess): Row[] {
  const db = openDatabase(join(serve.dir, "data", "mail-gateway.db"), { readonly: true });
  try {
    return db
      .query<Row, []>("SELECT m.subject, d.state, d.attempts, d.last_error FROM deliveries d JOIN messages m ON m.id = d.message_id ORDER BY d.id")
      .all();
  } finally {
    db.close();
  }
}

function subjectsReceived(relay: ScriptedRelay): string[] {
  return relay.received.map((m) => /^Subject: (.*)$/m.exec(m.data.toString("latin1"))?.[1]?.trim() ?? "").sort();
}

const logged = (serve: ServeProcess, msg: string) => serve.logs.filter((l) => l.msg === msg);

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

