/**
 * SIGHUP with changed relay settings while the real `mailgw serve` forwards: the new relay
 * takes the messages that were waiting for a connection of the old one. A reload defers nothing,
 * resends nothing, and every attempt names the relay that really had the message. Before, each
 * reload failed the waiting messages ("relay connection pool was closed") into a deferral with
 * backoff: 192 deferrals for 7 reloads in this test.
 */
import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { openDatabase } from "../../src/store/db.ts";
import { relayVars, startRelay, waitFor, type ScriptedRelay } from "../delivery/helpers.ts";
import { RawClient, greet, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { serveDir, startServe } from "../smtp/serve-process.ts";

const SESSIONS = 4;
const PER_SESSION = 150;
const RELOAD_EVERY_MS = 100;

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

function envFile(relay: ScriptedRelay): string {
  const vars = { ...relayVars(relay), RATE_LIMIT_MAX: "100000", QUEUE_RETRY_BASE_SECONDS: "0.05" };
  return `${Object.entries(vars).map(([k, v]) => `${k}=${v}`).join("\n")}\n`;
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
    let reloads = 0;
    const storm = setInterval(() => {
      reloads++;
      writeFileSync(join(dir, ".env"), envFile(reloads % 2 === 0 ? relays[0] : relays[1]));
      serve.proc.kill("SIGHUP");
    }, RELOAD_EVERY_MS);
    const sent: string[] = [];
    try {
      await Promise.all(
        Array.from({ length: SESSIONS }, async (_, s) => {
          const c = await RawClient.connect(serve.smtpPort);
          await greet(c);
          for (let i = 0; i < PER_SESSION; i++) {
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
    await serve.waitForLog((l) => l.msg === "relay settings reloaded");
    expect(reloads).toBeGreaterThanOrEqual(3);

    const db = openDatabase(join(dir, "data", "mail-gateway.db"), { readonly: true });
    try {
      await waitFor(() => db.query<{ n: number }, []>("SELECT count(*) AS n FROM deliveries WHERE state <> 'delivered'").get()?.n === 0, 30_000, "every forward delivered");
      const failedAttempts = db.query<{ reply: string }, []>("SELECT reply FROM delivery_attempts WHERE ok = 0").all();
      expect(failedAttempts).toEqual([]);
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
    } finally {
      db.close();
    }
    const arrived = [...relays[0].received, ...relays[1].received].map((m) => subjectOf(m.data));
    expect(arrived.sort()).toEqual([...sent].sort()); // each exactly once
    expect(serve.logs.filter((l) => l.level === "warn" || l.level === "error")).toEqual([]);
    expect(await serve.stop("SIGTERM")).toBe(0);
  } finally {
    if (serve.proc.exitCode === null) await serve.stop("SIGKILL");
    await Promise.all(relays.map((r) => r.close()));
  }
}, 90_000);
