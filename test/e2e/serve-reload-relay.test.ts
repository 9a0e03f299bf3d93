/**
 * SIGHUP with changed relay settings while the real `mailgw serve` forwards: the new relay
 * takes the messages that were waiting for a connection of the old one. A reload defers nothing,
 * resends nothing, and every attempt names the relay that really had the message. Before, each
 * reload failed the waiting messages ("relay connection pool was closed") into a deferral with
 * backoff: 192 deferrals for 7 reloads in this test. A reload that removes the relay holds the
 * waiting forwards (no failed attempt) until one is set again.
 */
import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { openDatabase } from "../../src/store/db.ts";
import type { Database } from "bun:sqlite";
import { relayVars, startRelay, waitFor, type ScriptedRelay } from "../delivery/helpers.ts";
import { RawClient, greet, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";

const SESSIONS = 4;
const PER_SESSION = 150;
const RELOAD_EVERY_MS = 100;
const MIN_RELOADS = 5;

const RULES = `domains: [company.com]
rules:
  - name: forward
    priority: 10
    category: sales
    action: forward
    forward_to: [sales@forward.example]
    conditions:
      - { field: subject, operator: contains, value: reload }
`;

/** The .env with this relay, or with none. */
function envFile(relay: ScriptedRelay | null): string {
  const vars = { ...(relay ? relayVars(relay) : {}), RATE_LIMIT_MAX: "100000", QUEUE_RETRY_BASE_SECONDS: "0.05" };
  return `${Object.entries(vars).map(([k, v]) => `${k}=${v}`).join("\n")}\n`;
}

/** SESSIONS × PER_SESSION forwards (more if needed for MIN_RELOADS) while `reload(n)` runs every RELOAD_EVERY_MS; their subjects. */
async function sendWhileReloading(serve: ServeProcess, reload: (n: number) => void): Promise<string[]> {
  let reloads = 0;
  const storm = setInterval(() => reload(++reloads), RELOAD_EVERY_MS);
  const sent: string[] = [];
  try {
    await Promise.all(
      Array.from({ length: SESSIONS }, async (_, s) => {
        const c = await RawClient.connect(serve.smtpPort);
        await greet(c);
        // At least PER_SESSION each, and on until a few reloads happened (a fast machine).
        for (let i = 0; i < PER_SESSION || reloads < MIN_RELOADS; i++) {
          const subject = `reload ${s}-${i}`;
          const body = `body of ${subject}\r\n${"y".repeat(i % 10 === 0 ? 50_000 : 100)}\r\n`;
          expect(await sendMail(c, "orders@company.com", simpleMessage(subject, body))).toStartWith("250 2.0.0");
          sent.push(subject);
        }
        c.end();
      }),
    );
  } finally {
    clearInterval(storm);
  }
  expect(reloads).toBeGreaterThanOrEqual(MIN_RELOADS);
  return sent;
}

/** Waits until every delivery is delivered; the replies of failed attempts (expected: none). */
async function failedAttemptsOnceDelivered(dir: string, extraCheck?: (db: Database) => void): Promise<string[]> {
  const db = openDatabase(join(dir, "data", "mail-gateway.db"), { readonly: true });
  try {
    await waitFor(() => db.query<{ n: number }, []>("SELECT count(*) AS n FROM deliveries WHERE state <> 'delivered'").get()?.n === 0, 30_000, "every forward delivered");
    extraCheck?.(db);
    return db.query<{ reply: string }, []>("SELECT reply FROM delivery_attempts WHERE ok = 0").all().map((r) => r.reply);
  } finally {
    db.close();
  }
}

function subjectOf(data: Buffer): string {
  return /^Subject: (.*)$/m.exec(data.toString("latin1"))?.[1]?.trim() ?? "";
}

test("SIGHUP switching relays under load: waiting forwards move to the new relay, none deferred or sent twice", async () => {
  const relays = [await startRelay(), await startRelay()] as const;
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), RULES);
  writeFileSync(join(dir, ".env"), envFile(relays[0]));
  const serve = await startServe("source", dir);
  try {
    const sent = await sendWhileReloading(serve, (n) => {
      writeFileSync(join(dir, ".env"), envFile(n % 2 === 0 ? relays[0] : relays[1]));
      serve.proc.kill("SIGHUP");
    });
    await serve.waitForLog((l) => l.msg === "relay settings reloaded");
    const failed = await failedAttemptsOnceDelivered(dir, (db) => {
      // Each attempt names the relay that had the message, also when a reload handed it over.
      const whereArrived = new Map<string, number>();
      for (const r of relays) for (const m of r.received) whereArrived.set(subjectOf(m.data), r.port);
      const attempts = db
        .query<{ subject: string; target: string }, []>(
          "SELECT m.subject, a.target FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN messages m ON m.id = d.message_id",
        )
        .all();
      expect(attempts).toHaveLength(sent.length);
      const misnamed = attempts.filter((a) => !a.target.startsWith(`127.0.0.1:${whereArrived.get(a.subject)} `));
      expect(misnamed).toEqual([]);
    });
    expect(failed).toEqual([]);
    const arrived = [...relays[0].received, ...relays[1].received].map((m) => subjectOf(m.data));
    expect(arrived.sort()).toEqual([...sent].sort()); // each exactly once
    expect(serve.logs.filter((l) => l.level === "warn" || l.level === "error")).toEqual([]);
    expect(await serve.stop("SIGTERM")).toBe(0);
  } finally {
    if (serve.proc.exitCode === null) await serve.stop("SIGKILL");
    await Promise.all(relays.map((r) => r.close()));
  }
}, 90_000);

test("SIGHUP removing and restoring the relay under load: waiting forwards are held, then delivered once; no failed attempt", async () => {
  const relay = await startRelay();
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), RULES);
  writeFileSync(join(dir, ".env"), envFile(relay));
  const serve = await startServe("source", dir);
  try {
    const sent = await sendWhileReloading(serve, (n) => {
      writeFileSync(join(dir, ".env"), envFile(n % 2 === 0 ? relay : null));
      serve.proc.kill("SIGHUP");
    });
    writeFileSync(join(dir, ".env"), envFile(relay));
    serve.proc.kill("SIGHUP");
    await serve.waitForLog((l) => l.msg === "relay settings reloaded" && String(l.relay).startsWith(`127.0.0.1:${relay.port}`));
    expect(await failedAttemptsOnceDelivered(dir)).toEqual([]);
    expect(relay.received.map((m) => subjectOf(m.data)).sort()).toEqual([...sent].sort());
    expect(serve.logs.filter((l) => l.level === "error")).toEqual([]);
    expect(await serve.stop("SIGTERM")).toBe(0);
  } finally {
    if (serve.proc.exitCode === null) await serve.stop("SIGKILL");
    await relay.close();
  }
}, 90_000);
