/**
 * kill -9 of the real `mailgw serve` (from source) while clients are sending: every message
 * that got `250 2.0.0 Queued as <id>` is in the archive after a restart, exactly once, with
 * its bytes; nothing is left unfinished. The restart's recovery runs before SMTP listens.
 */
import { describe, expect, test } from "bun:test";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { RawClient, greet, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { serveDir, startServe } from "../smtp/serve-process.ts";

const SENDERS = 4;
const KILL_AFTER_ACKS = 40;

interface Acked {
  id: string;
  subject: string;
}

async function archiveFiles(dir: string): Promise<Map<string, string>> {
  const root = join(dir, "data", "archive");
  const files = new Map<string, string>();
  for (const day of await readdir(root).catch(() => [] as string[])) {
    for (const name of await readdir(join(root, day))) files.set(name.replace(/\.eml$/, ""), join(root, day, name));
  }
  return files;
}

describe("kill -9 of a running serve", () => {
  test("every message answered 250 is archived after restart, exactly once", async () => {
    const dir = serveDir();
    const serve = await startServe("source", dir);
    const acked: Acked[] = [];
    let killed = false;
    const unexpected: string[] = [];
    let next = 0;
    const sender = async (): Promise<void> => {
      const c = await RawClient.connect(serve.smtpPort);
      await greet(c);
      while (!killed) {
        const subject = `crash-e2e-${next++}`;
        const reply = await sendMail(c, "b@company.com", simpleMessage(subject, `body of ${subject}\r\n`)).catch(() => "");
        const m = /^250 2\.0\.0 Queued as (\S+)/.exec(reply);
        if (!m?.[1]) {
          if (!killed) unexpected.push(reply || "(connection lost)");
          break;
        }
        acked.push({ id: m[1], subject });
        if (acked.length >= KILL_AFTER_ACKS && !killed) {
          killed = true;
          serve.proc.kill("SIGKILL");
        }
      }
      c.end();
    };
    await Promise.all(Array.from({ length: SENDERS }, sender));
    expect(unexpected).toEqual([]);
    expect(killed).toBe(true);
    expect(await serve.proc.exited).not.toBe(0);
    expect(acked.length).toBeGreaterThanOrEqual(KILL_AFTER_ACKS);

    const again = await startServe("source", dir);
    try {
      const recovered = await again.waitForLog((l) => l.msg === "spool recovered");
      expect(recovered).toBeDefined();
      const files = await archiveFiles(dir);
      const wrong: string[] = [];
      for (const a of acked) {
        const path = files.get(a.id);
        const text = path ? await readFile(path, "utf8") : "";
        const ok = text.startsWith("Received: ") && text.includes(`Subject: ${a.subject}\r\n`) && text.includes(`body of ${a.subject}\r\n`);
        if (!ok) wrong.push(`${a.id} (${a.subject}): ${path ? "content differs" : "not archived"}`);
      }
      expect(wrong).toEqual([]);
      // Exactly once: no subject appears in two archive files.
      const subjects = await Promise.all([...files.values()].map(async (p) => /Subject: (\S+)/.exec(await readFile(p, "utf8"))?.[1] ?? ""));
      expect(new Set(subjects).size).toBe(subjects.length);
      const spool = (await readdir(join(dir, "data", "spool"))).filter((n) => n.endsWith(".eml") || n.endsWith(".tmp"));
      expect(spool).toEqual([]);
    } finally {
      const code = await again.stop("SIGTERM");
      if (code !== 0) console.log(`serve exited ${code}; stderr: ${again.stderr()}; last logs: ${JSON.stringify(again.logs.slice(-5))}`);
      expect(code).toBe(0);
    }
  }, 60_000);

  // Session counts are batched for sessions without mail; one that handed over a message is
  // counted in that message's commit, so a kill -9 cannot leave more messages than sessions
  // on the stats page (an audit saw 252 sessions for 304 messages after one).
  test("the sessions that carried the messages acknowledged before it are counted", async () => {
    const dir = serveDir();
    const serve = await startServe("source", dir);
    const SESSIONS = 10;
    for (let i = 0; i < SESSIONS; i++) {
      const c = await RawClient.connect(serve.smtpPort);
      await greet(c);
      expect(await sendMail(c, "b@company.com", simpleMessage(`count-${i}`, "body\r\n"))).toMatch(/^250 /);
      await c.cmd("QUIT");
      c.end();
    }
    serve.proc.kill("SIGKILL");
    await serve.proc.exited;
    const totals = async (url: string): Promise<{ received: number; sessions: number }> => {
      const metrics = await (await fetch(`${url}/metrics`)).text();
      // Every sample of a family, labels or not, added up.
      const total = (name: string): number =>
        [...metrics.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)$`, "gm"))].reduce((n, m) => n + Number(m[1]), 0);
      return { received: total("mailgw_messages_received_total"), sessions: total("mailgw_smtp_sessions_total") };
    };
    const again = await startServe("source", dir);
    try {
      expect(await totals(again.httpUrl)).toEqual({ received: SESSIONS, sessions: SESSIONS });
      // Counted once each: a session with three messages, and one with none (counted at its end).
      const c = await RawClient.connect(again.smtpPort);
      await greet(c);
      for (let i = 0; i < 3; i++) expect(await sendMail(c, "b@company.com", simpleMessage(`three-${i}`, "body\r\n"))).toMatch(/^250 /);
      await c.cmd("QUIT");
      const idle = await RawClient.connect(again.smtpPort);
      await greet(idle);
      await idle.cmd("QUIT");
    } finally {
      expect(await again.stop("SIGTERM")).toBe(0);
    }
    const third = await startServe("source", dir);
    try {
      expect(await totals(third.httpUrl)).toEqual({ received: SESSIONS + 3, sessions: SESSIONS + 2 });
    } finally {
      expect(await third.stop("SIGTERM")).toBe(0);
    }
  }, 60_000);
});
