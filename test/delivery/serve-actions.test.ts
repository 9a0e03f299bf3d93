/**
 * The delivery actions through the real `mailgw serve` (from source), as a user runs them:
 * mail sent over SMTP, rules in rules.yaml, `mailgw queue` run beside the running gateway.
 * - webhook: a signed post whose `raw` is exactly the stored message (our `Received:` header,
 *   then the bytes the client sent); a receiver answering 400 → failed, shown by `queue list`;
 *   `queue retry` while serve runs → delivered, spool file released;
 * - forward: a relay answering 550 → failed; `queue retry` → delivered; `queue drop` of another
 *   → row and spool file gone, the relay never sees it;
 * - forward to two addresses, the relay answering 450 to one of them: the other gets one copy,
 *   `queue list` shows a deferred delivery for the refused one alone, which gets one copy later;
 *   550 to one and 450 to the other (nobody took it): the 550 one fails at once on its own;
 * - smuggling payloads sent over SMTP arrive at a raw-capture relay as one message each, with no
 *   bare CR or LF on the wire;
 * - wrong relay credentials → deferred, and the password is in no log line.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { createHmac } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { countBareLineEndings } from "../../src/act/normalize-crlf.ts";
import type { WebhookPayload } from "../../src/act/webhook-payload.ts";
import { openDatabase } from "../../src/store/db.ts";
import { RawClient, greet, sendMail, terminated } from "../smtp/helpers.ts";
import { serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";
import { relayVars, startRawRelay, startRelay, waitFor } from "./helpers.ts";

const ROOT = resolve(import.meta.dir, "../..");
const SECRET = "serve-webhook-secret";

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

async function serve(rules: string, env: Record<string, string>): Promise<ServeProcess> {
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), rules);
  const s = await startServe("source", dir, { QUEUE_RETRY_BASE_SECONDS: "0.05", RATE_LIMIT_MAX: "1000", ...env });
  cleanups.push(async () => {
    if (s.proc.exitCode === null && s.proc.signalCode === null) await s.stop("SIGKILL");
  });
  return s;
}

/** `mailgw queue …` from source in the gateway's directory (its default ./data), while serve runs. */
function queue(s: ServeProcess, ...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = Bun.spawnSync([process.execPath, join(ROOT, "src/main.ts"), "queue", ...args], {
    cwd: s.dir,
    env: { PATH: process.env.PATH ?? "", HOME: s.dir, NO_COLOR: "1" },
  });
  return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

function dbOf(s: ServeProcess): Database {
  const db = openDatabase(join(s.dir, "data", "mail-gateway.db"));
  cleanups.push(() => db.close());
  return db;
}

function stateOf(db: Database, id: string): string {
  return db.query<{ state: string }, [string]>(`SELECT state FROM deliveries WHERE message_id = ?`).get(id)?.state ?? "none";
}

function spoolFile(s: ServeProcess, id: string): string {
  return join(s.dir, "data", "spool", `${id}.eml`);
}

/** Sends `message` (exact bytes) over a raw SMTP session; returns the queue id from the 250. */
async function sendRaw(port: number, rcpt: string, message: string): Promise<string> {
  const c = await RawClient.connect(port);
  try {
    expect(await greet(c)).toStartWith("250");
    const reply = await sendMail(c, rcpt, message);
    const id = /^250 2\.0\.0 Queued as (\S+)/.exec(reply)?.[1];
    if (!id) throw new Error(`unexpected reply: ${reply}`);
    return id;
  } finally {
    c.end();
  }
}

function webhookReceiver(statuses: number[]) {
  const bodies: { body: string; signature: string | null; timestamp: string | null }[] = [];
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      bodies.push({ body: await req.text(), signature: req.headers.get("x-mailgw-signature"), timestamp: req.headers.get("x-mailgw-timestamp") });
      return new Response("", { status: statuses.shift() ?? 200 });
    },
  });
  cleanups.push(() => server.stop(true));
  return { bodies, url: `http://127.0.0.1:${server.port}/inbound` };
}

describe("actions through mailgw serve", () => {
  test("webhook: signed, raw = the stored bytes; 400 → failed in `queue list`; `queue retry` → delivered", async () => {
    const hook = webhookReceiver([200, 400]);
    const rules = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: orders-hook, priority: 10, category: orders, action: webhook, url: "${hook.url}", conditions: [{ field: rcpt, operator: equals, value: orders@company.com }] }
`;
    const s = await serve(rules, { WEBHOOK_SECRET: SECRET });
    const db = dbOf(s);
    const message = "From: Alice <alice@example.org>\r\nTo: orders@company.com\r\nSubject: order 42\r\n\r\nTwo crates, please.\r\n";
    const first = await sendRaw(s.smtpPort, "orders@company.com", message);
    await waitFor(() => stateOf(db, first) === "delivered", 15_000, "first webhook delivered");
    const posted = hook.bodies[0]!;
    expect(posted.signature).toBe(`sha256=${createHmac("sha256", SECRET).update(posted.body).digest("hex")}`);
    const payload = JSON.parse(posted.body) as WebhookPayload;
    expect(String(payload.timestamp)).toBe(posted.timestamp!);
    expect(payload.id).toBe(first);
    expect(payload.envelope.rcptTo).toEqual(["orders@company.com"]);
    expect(payload.envelope.mailFrom).toBe("a@sender.example");
    expect(payload.subject).toBe("order 42");
    const raw = Buffer.from(payload.raw, "base64").toString("latin1");
    expect(raw).toMatch(/^Received: from client\.example \(/);
    expect(raw.endsWith(message)).toBe(true);
    expect(raw.slice(0, raw.length - message.length)).toMatch(/^Received: [^]*\r\n$/);
    await waitFor(() => !existsSync(spoolFile(s, first)), 5_000, "spool file released after delivery");

    // The receiver now answers 400: a permanent failure, kept and listed.
    const second = await sendRaw(s.smtpPort, "orders@company.com", message.replace("order 42", "order 43"));
    await waitFor(() => stateOf(db, second) === "failed", 15_000, "400 → failed");
    expect(hook.bodies).toHaveLength(2);
    expect(existsSync(spoolFile(s, second))).toBe(true);
    const listed = queue(s, "list", "--state", "failed", "--json");
    expect(listed.code).toBe(0);
    const entries = JSON.parse(listed.stdout) as { id: string; state: string; kind: string; lastError: string; rule: string }[];
    expect(entries.map((e) => [e.id, e.state, e.kind, e.rule])).toEqual([[second, "failed", "webhook", "orders-hook"]]);
    expect(entries[0]!.lastError).toContain("400");

    // The receiver is fixed (it answers 200 from now on): retry while serve runs.
    const retried = queue(s, "retry", second);
    expect(retried.code).toBe(0);
    await waitFor(() => stateOf(db, second) === "delivered", 15_000, "delivered after queue retry");
    expect(hook.bodies).toHaveLength(3);
    expect((JSON.parse(hook.bodies[2]!.body) as WebhookPayload).subject).toBe("order 43");
    await waitFor(() => !existsSync(spoolFile(s, second)), 5_000, "spool file released after the retry");
    expect(await s.stop()).toBe(0);
  }, 60_000);

  test("forward: 550 → failed; `queue retry` → delivered; `queue drop` → gone, never sent", async () => {
    const relay = await startRelay();
    cleanups.push(() => relay.close());
    relay.mode = "permfail";
    const rules = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: to-sales, priority: 10, category: sales, action: forward, forward_to: [sales@forward.example], conditions: [{ field: subject, operator: contains, value: quote }] }
`;
    const s = await serve(rules, relayVars(relay));
    const db = dbOf(s);
    const kept = await sendRaw(s.smtpPort, "b@company.com", "From: a@sender.example\r\nTo: b@company.com\r\nSubject: quote kept\r\n\r\nbody\r\n");
    const dropped = await sendRaw(s.smtpPort, "b@company.com", "From: a@sender.example\r\nTo: b@company.com\r\nSubject: quote dropped\r\n\r\nbody\r\n");
    await waitFor(() => stateOf(db, kept) === "failed" && stateOf(db, dropped) === "failed", 15_000, "550 → failed");
    const text = queue(s, "list", "--state", "failed");
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(kept);
    expect(text.stdout).toMatch(/550/);

    // The newest delivery: before migration 5 its number went to the next delivery created.
    const droppedNumber = db.query<{ id: number }, [string]>(`SELECT id FROM deliveries WHERE message_id = ?`).get(dropped)!.id;
    const drop = queue(s, "drop", dropped);
    expect(drop.code).toBe(0);
    expect(stateOf(db, dropped)).toBe("none");
    expect(existsSync(spoolFile(s, dropped))).toBe(false);

    relay.mode = "ok";
    const retried = queue(s, "retry", "--all");
    expect(retried.code).toBe(0);
    await waitFor(() => stateOf(db, kept) === "delivered", 15_000, "delivered after queue retry --all");
    expect(relay.received.map((m) => /^Subject: (.*)$/m.exec(m.data.toString())?.[1])).toEqual(["quote kept"]);
    expect(relay.received[0]!.to).toEqual(["sales@forward.example"]);
    expect(queue(s, "retry", dropped).code).toBe(1);
    // A delivery queued after the drop gets a new number: `queue retry <old number>` finds nothing.
    const later = await sendRaw(s.smtpPort, "b@company.com", "From: a@sender.example\r\nTo: b@company.com\r\nSubject: quote later\r\n\r\nbody\r\n");
    await waitFor(() => stateOf(db, later) === "delivered", 15_000, "later forward delivered");
    const laterNumber = db.query<{ id: number }, [string]>(`SELECT id FROM deliveries WHERE message_id = ?`).get(later)!.id;
    expect(laterNumber).toBeGreaterThan(droppedNumber);
    expect(queue(s, "retry", String(droppedNumber)).code).toBe(1);
    expect(await s.stop()).toBe(0);
  }, 60_000);

  test("forward: a relay answering 451 to DATA while more forwards wait: each delivered once retried, the delivery thread never crashes", async () => {
    const relay = await startRelay();
    cleanups.push(() => relay.close());
    relay.tempFailures = 6;
    const rules = `domains: [company.com]
default: { action: forward, category: fwd, forward_to: [inbox@forward.example] }
rules: []
`;
    const s = await serve(rules, relayVars(relay));
    // All in one write, so they are queued together and the relay session has a next one waiting
    // when its 451 comes (the case where the pool's RSET was still pending).
    const c = await RawClient.connect(s.smtpPort);
    await greet(c);
    const count = 12;
    c.write(Array.from({ length: count }, (_, i) =>
      `MAIL FROM:<a@sender.example>\r\nRCPT TO:<b@company.com>\r\nDATA\r\n${terminated(`Subject: greylisted ${i}\r\n\r\nbody\r\n`)}`).join(""));
    const ids: string[] = [];
    for (let i = 0; i < count * 4; i++) {
      const reply = await c.reply(5000);
      if (reply.startsWith("250 2.0.0")) ids.push(reply);
    }
    c.end();
    const subjects = () => new Set(relay.received.map((m) => /^Subject: (.*)$/m.exec(m.data.toString())?.[1]));
    await waitFor(() => subjects().size === ids.length, 30_000, "every forward delivered after the 451s");
    expect([...subjects()].sort()).toEqual(ids.map((_, i) => `greylisted ${i}`).sort());
    expect(relay.tempFailures).toBe(0);
    // A crashed thread is replaced and its deliveries redone: the relay would see duplicates.
    expect(s.logs.filter((l) => String(l.msg).startsWith("delivery thread"))).toEqual([]);
    expect(relay.received.length).toBe(ids.length);
    expect(await s.stop()).toBe(0);
  }, 60_000);

  test("forward: 250 for one forward_to address, 450 for the other: one copy each, only the 450 one is retried", async () => {
    const relay = await startRelay();
    cleanups.push(() => relay.close());
    relay.deferRecipients.set("b@forward.example", Infinity);
    const rules = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: to-both, priority: 10, category: sales, action: forward, forward_to: [a@forward.example, b@forward.example], conditions: [{ field: subject, operator: contains, value: quote }] }
`;
    const s = await serve(rules, relayVars(relay));
    const db = dbOf(s);
    const id = await sendRaw(s.smtpPort, "b@company.com", "From: a@sender.example\r\nTo: b@company.com\r\nSubject: quote\r\n\r\nbody\r\n");
    const rows = () => db.query<{ state: string; attempts: number }, [string]>(`SELECT state, attempts FROM deliveries WHERE message_id = ? ORDER BY id`).all(id);
    await waitFor(() => rows().some((r) => r.state !== "delivered" && r.attempts >= 3), 15_000, "the refused address retried");
    const listed = (JSON.parse(queue(s, "list", "--json").stdout) as { id: string; target: string; lastError: string }[]).filter((e) => e.id === id);
    expect(listed.map((e) => e.target)).toEqual(["b@forward.example"]);
    expect(listed[0]!.lastError).toContain("450");
    expect(relay.received.map((m) => m.to)).toEqual([["a@forward.example"]]);
    expect(existsSync(spoolFile(s, id))).toBe(true);

    relay.deferRecipients.delete("b@forward.example");
    await waitFor(() => rows().map((r) => r.state).join() === "delivered,delivered", 15_000, "b delivered");
    expect(relay.received.map((m) => m.to)).toEqual([["a@forward.example"], ["b@forward.example"]]);
    await waitFor(() => !existsSync(spoolFile(s, id)), 5_000, "spool file released");
    expect(await s.stop()).toBe(0);
  }, 60_000);

  test("forward: 550 for one forward_to address, 450 for the other, nobody took it: the 550 one fails at once, only the 450 one is retried", async () => {
    const relay = await startRelay();
    cleanups.push(() => relay.close());
    relay.refuseRecipients = ["a@forward.example"];
    relay.deferRecipients.set("b@forward.example", Infinity);
    const rules = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: to-both, priority: 10, category: sales, action: forward, forward_to: [a@forward.example, b@forward.example], conditions: [{ field: subject, operator: contains, value: quote }] }
`;
    const s = await serve(rules, relayVars(relay));
    const id = await sendRaw(s.smtpPort, "b@company.com", "From: a@sender.example\r\nTo: b@company.com\r\nSubject: quote\r\n\r\nbody\r\n");
    const listed = () => (JSON.parse(queue(s, "list", "--json").stdout) as { id: string; target: string; state: string; lastError: string }[]).filter((e) => e.id === id);
    await waitFor(() => listed().length === 2, 15_000, "the 550 address split off");
    const byTarget = Object.fromEntries(listed().map((e) => [e.target, e]));
    expect(byTarget["a@forward.example"]).toMatchObject({ state: "failed", lastError: expect.stringContaining("550") });
    expect(byTarget["b@forward.example"]?.lastError).toContain("450");
    expect(["deferred", "queued", "delivering"]).toContain(byTarget["b@forward.example"]?.state ?? "");
    relay.deferRecipients.delete("b@forward.example");
    await waitFor(() => relay.received.length === 1, 15_000, "b delivered");
    expect(relay.received.map((m) => m.to)).toEqual([["b@forward.example"]]);
    expect(await s.stop()).toBe(0);
  }, 60_000);

  test("smuggling payloads sent over SMTP reach the relay as one message each, no bare CR/LF on the wire", async () => {
    const { server, port, capture } = await startRawRelay();
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const rules = `domains: [company.com]
default: { action: forward, category: default, forward_to: [inbox@forward.example] }
rules: []
`;
    const s = await serve(rules, { RELAY_SMTP_HOST: "127.0.0.1", RELAY_SMTP_PORT: String(port), RELAY_SMTP_SECURE: "none" });
    const db = dbOf(s);
    const payloads = ["\n.\n", "\r.\r", "\r.\n", "\n.\r", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r", "\r\n\x00.\r\n", "\r\n.\x00\r\n", "\r\r\n.\r\r\n"];
    const smuggled = "MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@company.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nowned\r\n";
    const ids: string[] = [];
    for (const payload of payloads) {
      ids.push(await sendRaw(s.smtpPort, "b@company.com", `From: a@sender.example\r\nTo: b@company.com\r\nSubject: smuggle\r\n\r\nbefore${payload}${smuggled}after\r\n`));
    }
    await waitFor(() => ids.every((id) => stateOf(db, id) === "delivered"), 20_000, "all forwarded");
    expect(capture.bodies).toHaveLength(payloads.length);
    expect(capture.commands.filter((c) => /^MAIL FROM/i.test(c))).toHaveLength(payloads.length);
    expect(capture.commands.filter((c) => /^DATA$/i.test(c))).toHaveLength(payloads.length);
    expect(capture.commands.some((c) => c.includes("attacker") || c.includes("victim"))).toBe(false);
    for (const body of capture.bodies) {
      expect(countBareLineEndings(body)).toBe(0);
      const text = body.toString("latin1");
      expect(text).toStartWith("Received: ");
      expect(text).toContain("MAIL FROM:<evil@attacker.example>");
      expect(text.endsWith("after")).toBe(true);
    }
    expect(await s.stop()).toBe(0);
  }, 60_000);

  test("wrong relay credentials: deferred with the relay's 535, the password in no log line", async () => {
    const relay = await startRelay();
    cleanups.push(() => relay.close());
    const rules = `domains: [company.com]
default: { action: forward, category: default, forward_to: [inbox@forward.example] }
rules: []
`;
    const password = "wrong-pass-7f3a9c";
    const s = await serve(rules, relayVars(relay, { RELAY_SMTP_PASS: password, LOG_LEVEL: "debug" }));
    const db = dbOf(s);
    const id = await sendRaw(s.smtpPort, "b@company.com", "From: a@sender.example\r\nTo: b@company.com\r\nSubject: hi\r\n\r\nbody\r\n");
    await waitFor(() => stateOf(db, id) === "deferred", 15_000, "deferred");
    await s.waitForLog((l) => l.msg === "deferred" && l.id === id);
    expect(relay.authAttempts.some((a) => a.password === password && a.secure)).toBe(true);
    expect(relay.received).toHaveLength(0);
    expect(await s.stop()).toBe(0);
    const dbFiles = ["mail-gateway.db", "mail-gateway.db-wal"].map((f) => join(s.dir, "data", f)).filter((f) => existsSync(f));
    const everything = JSON.stringify(s.logs) + s.stderr() + dbFiles.map((f) => readFileSync(f).toString("latin1")).join("");
    expect(everything).toContain("535");
    expect(everything).not.toContain(password);
  }, 60_000);
});
