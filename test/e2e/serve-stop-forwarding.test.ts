/**
 * Graceful stops of the compiled `mailgw serve` (SIGTERM, as `systemctl restart` sends) while
 * six sessions send and the delivery thread forwards through a real relay (STARTTLS + AUTH):
 * each stop exits 0 within the grace period, and after the last start every message that got
 * `250` has reached the relay exactly once — a graceful stop lets running attempts finish and
 * recording their results, so unlike kill -9 (serve-kill-forwarding.test.ts) it resends nothing.
 * The `archive: true` copies are there once each; nothing is left queued or unfinished.
 */
import { afterAll, expect, test } from "bun:test";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openDatabase } from "../../src/store/db.ts";
import { relayVars, startRelay, waitFor } from "../delivery/helpers.ts";
import { RawClient, greet, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { cleanupBinary, serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";

const ROUNDS = 4;
const SENDERS = 6;

afterAll(() => cleanupBinary(), 60_000);

/** Sends until `stopAfterMs`, then SIGTERM; the acknowledged ids and subjects, and the exit code. */
async function roundUntilStopped(serve: ServeProcess, stopAfterMs: number, counter: { next: number }) {
  const acked = new Map<string, string>();
  const unexpected: string[] = [];
  let stopping = false;
  const senders = Array.from({ length: SENDERS }, async () => {
    const c = await RawClient.connect(serve.smtpPort);
    await greet(c);
    while (!stopping) {
      const n = counter.next++;
      const subject = `stop ${n}`;
      const reply = await sendMail(c, "orders@company.com", simpleMessage(subject, `body of ${subject}\r\n${"z".repeat(n % 5 === 0 ? 60_000 : 300)}\r\n`)).catch(() => "");
      const id = /^250 2\.0\.0 Queued as (\S+)/.exec(reply)?.[1];
      if (id) {
        acked.set(id, subject);
        continue;
      }
      // While stopping, a session is told 421 or cut; anything else is wrong.
      if (!(stopping && (reply === "" || reply.startsWith("421")))) unexpected.push(reply || "(connection lost)");
      break;
    }
    c.end();
  });
  await Bun.sleep(stopAfterMs);
  stopping = true;
  const exit = await serve.stop("SIGTERM");
  await Promise.all(senders);
  return { acked, unexpected, exit };
}

test("SIGTERM again and again while forwarding: exit 0 each time, every 250 at the relay exactly once", async () => {
  const relay = await startRelay();
  const dir = serveDir();
  writeFileSync(
    join(dir, "rules.yaml"),
    `domains: [company.com]
rules:
  - name: forward-and-keep
    priority: 10
    category: sales
    action: forward
    archive: true
    forward_to: [sales@forward.example]
    conditions:
      - { field: subject, operator: contains, value: stop }
`,
  );
  const env = { ...relayVars(relay), RATE_LIMIT_MAX: "100000" };
  const acked = new Map<string, string>();
  const counter = { next: 0 };
  let last: ServeProcess | null = null;
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const r = await roundUntilStopped(await startServe("binary", dir, env), 300 + round * 150, counter);
      expect(r.unexpected).toEqual([]);
      expect(r.exit).toBe(0);
      for (const [id, subject] of r.acked) acked.set(id, subject);
    }
    expect(acked.size).toBeGreaterThan(ROUNDS * SENDERS);
    last = await startServe("binary", dir, env);
    const db = openDatabase(join(dir, "data", "mail-gateway.db"), { readonly: true });
    try {
      await waitFor(() => db.query<{ n: number }, []>("SELECT count(*) AS n FROM deliveries WHERE state <> 'delivered'").get()?.n === 0, 30_000, "every forward delivered");
      expect(db.query<{ n: number }, []>("SELECT count(*) AS n FROM messages WHERE status <> 'done'").get()?.n).toBe(0);
    } finally {
      db.close();
    }
    const subjects = relay.received.map((m) => /^Subject: (.*)$/m.exec(m.data.toString("latin1"))?.[1]?.trim() ?? "");
    expect(subjects.sort()).toEqual([...acked.values()].sort());
    const archive = join(dir, "data", "archive");
    const archived = readdirSync(archive).flatMap((day) => readdirSync(join(archive, day)));
    expect(archived.sort()).toEqual([...acked.keys()].map((id) => `${id}.eml`).sort());
    expect(await last.stop("SIGTERM")).toBe(0);
    last = null;
  } finally {
    if (last) await last.stop("SIGKILL");
    await relay.close();
  }
}, 120_000);
