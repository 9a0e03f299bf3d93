/**
 * The relay connection pool (src/act/relay-pool.ts) against a small scripted SMTP server on
 * loopback (raw socket, PIPELINING): session reuse, one requeue when a reused session dies
 * before DATA, no message sent on a session while its RSET is under way, abort of a stalled
 * message closing only its session, a relay that is down
 * failing the waiting messages at once, a relay refusing extra connections with 421, close(), and
 * sessions ended with QUIT (idle, retired, closed, refused login), never just dropped.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { createServer, type Server, type Socket } from "node:net";
import { createRelayPool, isPoolClosedError, type RelayPool, type RelayPoolOptions, type RelayPoolResult } from "../../src/act/relay-pool.ts";
import { onLines, waitFor } from "./helpers.ts";

interface Script {
  /** Close the session without a reply when its Nth MAIL FROM arrives (1-based). */
  dropOnMail?: number;
  /** Never answer the end of DATA for messages to this recipient. */
  stallRcpt?: string;
  /** Sessions open at once beyond this get `421` as greeting (a relay capping connections). */
  maxSessions?: number;
  /** Answer the end of DATA after this many ms (keeps sessions busy). */
  dataReplyDelayMs?: number;
  /** Answer the end of DATA with `451` for messages to this recipient (the pool then sends RSET). */
  tempfailRcpt?: string;
  /** Offer AUTH PLAIN and refuse every login with 535. */
  refuseAuth?: boolean;
  /** Answer every MAIL FROM with 421 and close (a provider throttling us). */
  closeOnMail421?: boolean;
  /** Never answer RCPT TO for this recipient (a relay stalling before the data). */
  stallEnvelopeRcpt?: string;
  /** Answer RSET after this many ms (commands after it wait, as a real relay reads in order). */
  rsetReplyDelayMs?: number;
}

interface FakeRelay {
  port: number;
  sessions: number;
  /** Sessions that ended with QUIT; `ended`: all sessions that ended. */
  quits: number;
  ended: number;
  delivered: { to: string; body: string }[];
  /** Messages to `stallRcpt` whose end of data arrived (and is never answered). */
  stalled: number;
  close(): Promise<void>;
}

async function startFakeRelay(script: Script = {}): Promise<FakeRelay> {
  const sockets = new Set<Socket>();
  const state: FakeRelay = { port: 0, sessions: 0, quits: 0, ended: 0, delivered: [], stalled: 0, close: async () => {} };
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => {
      sockets.delete(socket);
      state.ended++;
    });
    socket.on("error", () => {});
    state.sessions++;
    if (script.maxSessions !== undefined && sockets.size > script.maxSessions) {
      socket.end("421 4.7.0 fake.test too many connections from your host\r\n");
      return;
    }
    let inData = false;
    let body = "";
    let rcpt = "";
    let mails = 0;
    socket.write("220 fake.test ESMTP\r\n");
    let paused = false;
    const held: string[] = [];
    onLines(socket, (line) => (paused ? void held.push(line) : handle(line)));
    function handle(line: string): void {
      if (socket.destroyed) return;
      if (inData) {
        if (line === ".") {
          inData = false;
          if (rcpt === script.stallRcpt) return void state.stalled++;
          if (rcpt === script.tempfailRcpt) return void socket.write("451 4.3.0 try again later\r\n");
          state.delivered.push({ to: rcpt, body });
          if (script.dataReplyDelayMs) setTimeout(() => socket.write("250 2.0.0 queued\r\n"), script.dataReplyDelayMs);
          else socket.write("250 2.0.0 queued\r\n");
        } else body += `${line}\r\n`;
        return;
      }
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === "EHLO") socket.write(`250-fake.test\r\n${script.refuseAuth ? "250-AUTH PLAIN\r\n" : ""}250 PIPELINING\r\n`);
      else if (verb === "AUTH") socket.write("535 5.7.8 authentication failed\r\n");
      else if (verb === "MAIL") {
        mails++;
        if (mails === script.dropOnMail) return void socket.destroy();
        if (script.closeOnMail421) return void socket.end("421 4.7.0 fake.test try again later, closing connection\r\n");
        socket.write("250 ok\r\n");
      } else if (verb === "RCPT") {
        rcpt = /<(.*)>/.exec(line)?.[1] ?? "";
        if (rcpt === script.stallEnvelopeRcpt) return;
        socket.write("250 ok\r\n");
      } else if (verb === "DATA") {
        inData = true;
        body = "";
        socket.write("354 go\r\n");
      } else if (verb === "RSET" && script.rsetReplyDelayMs) {
        paused = true;
        setTimeout(() => {
          paused = false;
          socket.write("250 reset\r\n");
          for (const l of held.splice(0)) handle(l);
        }, script.rsetReplyDelayMs);
      } else if (verb === "QUIT") {
        state.quits++;
        socket.end("221 bye\r\n");
      }
      else socket.write("250 ok\r\n");
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  state.port = typeof address === "object" && address !== null ? address.port : 0;
  state.close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  return state;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

function pool(port: number, maxConnections = 1, more: Partial<RelayPoolOptions> = {}): RelayPool {
  const p = createRelayPool({
    connection: { host: "127.0.0.1", port, ignoreTLS: true, name: "pool.test", connectionTimeout: 2_000, greetingTimeout: 2_000, logger: false },
    auth: null,
    maxConnections,
    maxMessagesPerConnection: 100,
    idleTimeoutMs: 5_000,
    maxRequeues: 1,
    ...more,
  });
  cleanups.push(() => p.close());
  return p;
}

function send(p: RelayPool, to: string, signal = new AbortController().signal): Promise<RelayPoolResult> {
  return p.send({ from: "a@example.org", to: [to], raw: Buffer.from(`Subject: ${to}\r\n\r\nhello\r\n`), signal });
}

function errorCode(r: RelayPoolResult): string {
  if (r.ok) return "ok";
  const e = r.error as { code?: unknown; name?: unknown };
  return typeof e.code === "string" ? e.code : String(e.name);
}

describe("relay pool", () => {
  test("messages share one session; bytes arrive as sent", async () => {
    const relay = await startFakeRelay();
    cleanups.push(() => relay.close());
    const p = pool(relay.port);
    const results = await Promise.all(["x1@t.test", "x2@t.test", "x3@t.test"].map((to) => send(p, to)));
    expect(results.map(errorCode)).toEqual(["ok", "ok", "ok"]);
    expect(relay.sessions).toBe(1);
    expect(relay.delivered.map((d) => d.to)).toEqual(["x1@t.test", "x2@t.test", "x3@t.test"]);
    expect(relay.delivered[0]!.body).toBe("Subject: x1@t.test\r\n\r\nhello\r\n");
  });

  test("a reused session that dies at MAIL FROM: the message goes out once more on a fresh session", async () => {
    const relay = await startFakeRelay({ dropOnMail: 2 });
    cleanups.push(() => relay.close());
    const p = pool(relay.port);
    expect(errorCode(await send(p, "first@t.test"))).toBe("ok");
    expect(errorCode(await send(p, "second@t.test"))).toBe("ok");
    expect(relay.sessions).toBe(2);
    expect(relay.delivered.map((d) => d.to)).toEqual(["first@t.test", "second@t.test"]);
  });

  test("a message sent right after a 4xx waits for the session's RSET (no crossed replies)", async () => {
    const relay = await startFakeRelay({ tempfailRcpt: "later@t.test" });
    cleanups.push(() => relay.close());
    const p = pool(relay.port);
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown): void => void uncaught.push(err);
    process.on("uncaughtException", onUncaught);
    cleanups.push(() => void process.off("uncaughtException", onUncaught));
    for (let i = 0; i < 3; i++) {
      expect(errorCode(await send(p, "later@t.test"))).toBe("EMESSAGE");
      // Sent while the RSET is on the wire: RSET's reply must not be taken for this MAIL's.
      expect(errorCode(await send(p, `next${i}@t.test`))).toBe("ok");
    }
    expect(uncaught).toEqual([]);
    expect(relay.delivered.map((d) => d.to)).toEqual(["next0@t.test", "next1@t.test", "next2@t.test"]);
    expect(relay.sessions).toBe(1); // the session is kept after the RSET, not replaced
  });

  test("a session whose idle time runs out during its RSET is not retired under a message waiting for it", async () => {
    // The pool is at its one connection; the message sent during the RSET waits for that session.
    const relay = await startFakeRelay({ tempfailRcpt: "later@t.test", rsetReplyDelayMs: 300 });
    cleanups.push(() => relay.close());
    const p = pool(relay.port, 1, { idleTimeoutMs: 200 });
    expect(errorCode(await send(p, "first@t.test"))).toBe("ok");
    await Bun.sleep(120); // the idle timer has run 120 of its 200 ms
    const refused = send(p, "later@t.test");
    await Bun.sleep(20);
    const waiting = p.send({ from: "a@example.org", to: ["waiting@t.test"], raw: Buffer.from("Subject: w\r\n\r\nhello\r\n"), signal: new AbortController().signal, deadlineMs: 5_000 });
    expect(errorCode(await refused)).toBe("EMESSAGE");
    // Before: the idle timer retired the session mid-RSET and nothing dispatched the waiting
    // message, which failed at its deadline (AbortError) although the relay was fine.
    expect(errorCode(await waiting)).toBe("ok");
    expect(relay.delivered.map((d) => d.to)).toEqual(["first@t.test", "waiting@t.test"]);
  });

  test("an aborted (stalled) message closes only its session; the next one is delivered", async () => {
    const relay = await startFakeRelay({ stallRcpt: "stall@t.test" });
    cleanups.push(() => relay.close());
    const p = pool(relay.port);
    const stalled = await send(p, "stall@t.test", AbortSignal.timeout(300));
    expect(errorCode(stalled)).toBe("AbortError");
    expect(errorCode(await send(p, "after@t.test"))).toBe("ok");
    expect(relay.sessions).toBe(2);
    expect(relay.delivered.map((d) => d.to)).toEqual(["after@t.test"]);
  });

  // Every connection busy: the message still in line when its deadline passes was never sent,
  // and its error says so (it read "The operation timed out.", as if the relay had been tried).
  test("a message whose deadline passes while it waits for a connection says it waited and nothing was sent", async () => {
    const relay = await startFakeRelay({ dataReplyDelayMs: 1_000 });
    cleanups.push(() => relay.close());
    const p = pool(relay.port, 1);
    const busy = send(p, "first@t.test");
    const r = await p.send({ from: "a@example.org", to: ["second@t.test"], raw: Buffer.from("Subject: s\r\n\r\nhello\r\n"), signal: new AbortController().signal, deadlineMs: 200 });
    expect(r.ok).toBe(false);
    expect(r.ok ? "" : String((r.error as Error).message)).toBe(
      "The operation timed out while waiting for a connection to the relay (all busy with other messages, or still opening); nothing was sent",
    );
    expect(errorCode(await busy)).toBe("ok");
    expect(relay.delivered.map((d) => d.to)).toEqual(["first@t.test"]);
  });

  // The deadline cut it off on a session: a relay too slow (a tarpit answering each command just
  // within the socket timeout) or a transfer too slow. Neither a reply nor a dead session.
  test("a message its deadline cuts off on a session gives no verdict on the relay (relayDown absent)", async () => {
    const relay = await startFakeRelay({ stallEnvelopeRcpt: "slow@t.test" });
    cleanups.push(() => relay.close());
    const p = pool(relay.port);
    const r = await p.send({ from: "a@example.org", to: ["slow@t.test"], raw: Buffer.from("Subject: slow\r\n\r\nhello\r\n"), signal: new AbortController().signal, deadlineMs: 300 });
    expect(errorCode(r)).toBe("AbortError");
    // Before: false, "a session worked": the probe of a suspended relay that stalls ended the
    // suspension ("relay is back"), and every waiting forward went into the stalling relay.
    expect(r.ok ? "ok" : r.relayDown).toBeUndefined();
  });

  // RFC 5321 4.5.3.2.6: up to 10 minutes for the reply to the end of data; cutting it short makes a
  // duplicate of a message the relay already has. Scaled down here: socket 400 ms, deadline 300 ms.
  test("the reply to the end of data is awaited past the deadline and the socket timeout, up to finalReplyTimeoutMs", async () => {
    const relay = await startFakeRelay({ dataReplyDelayMs: 1_200 });
    cleanups.push(() => relay.close());
    const p = createRelayPool({
      connection: { host: "127.0.0.1", port: relay.port, ignoreTLS: true, name: "pool.test", socketTimeout: 400, logger: false },
      auth: null, maxConnections: 1, maxMessagesPerConnection: 100, idleTimeoutMs: 5_000, maxRequeues: 1, finalReplyTimeoutMs: 5_000,
    });
    cleanups.push(() => p.close());
    const job = (to: string) => ({ from: "a@example.org", to: [to], raw: Buffer.from(`Subject: ${to}\r\n\r\nhello\r\n`), signal: new AbortController().signal, deadlineMs: 300 });
    expect(errorCode(await p.send(job("slow@t.test")))).toBe("ok");
    expect(errorCode(await p.send(job("again@t.test")))).toBe("ok"); // same session, same again
    expect(relay.delivered.map((d) => d.to)).toEqual(["slow@t.test", "again@t.test"]);
    expect(relay.sessions).toBe(1);
  });

  test("relay down: every waiting message fails at once with a connection error, no session left", async () => {
    const relay = await startFakeRelay();
    const port = relay.port;
    await relay.close();
    const p = pool(port, 2);
    const started = Date.now();
    const results = await Promise.all([1, 2, 3, 4, 5].map((i) => send(p, `m${i}@t.test`)));
    expect(results.every((r) => !r.ok)).toBe(true);
    expect(results.map(errorCode).every((c) => c === "ESOCKET" || c === "ECONNECTION")).toBe(true);
    expect(Date.now() - started).toBeLessThan(2_000);
    // A second session still opening when the first failed goes away on its own failure.
    for (let i = 0; i < 50 && p.sessions() > 0; i++) await Bun.sleep(20);
    expect(p.sessions()).toBe(0);
  });

  test("a refused login (535) costs one login for all the waiting messages: one session sets up at a time until one has", async () => {
    const relay = await startFakeRelay({ refuseAuth: true });
    cleanups.push(() => relay.close());
    const p = pool(relay.port, 4, { auth: { user: "u", pass: "wrong" } });
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => send(p, `m${i}@t.test`)));
    expect(results.map(errorCode)).toEqual(Array(6).fill("EAUTH"));
    expect(results.every((r) => !r.ok && r.relayDown === true)).toBe(true);
    // Before: 4 sessions opened at once for the 6 waiting messages, 4 refused logins.
    expect(relay.sessions).toBe(1);
    // Once a session is up, the pool opens the others side by side again.
    const good = await startFakeRelay({ dataReplyDelayMs: 50 });
    cleanups.push(() => good.close());
    const q = pool(good.port, 4);
    const sent = await Promise.all(Array.from({ length: 8 }, (_, i) => send(q, `n${i}@t.test`)));
    expect(sent.map(errorCode)).toEqual(Array(8).fill("ok"));
    expect(good.sessions).toBe(4);
  });

  test("a relay allowing fewer connections than the pool: its 421s cap the pool, no reconnect loop, nothing fails", async () => {
    const relay = await startFakeRelay({ maxSessions: 2, dataReplyDelayMs: 5 });
    cleanups.push(() => relay.close());
    const p = pool(relay.port, 8);
    const results = await Promise.all(Array.from({ length: 60 }, (_, i) => send(p, `m${i}@t.test`)));
    expect(results.map(errorCode).filter((c) => c !== "ok")).toEqual([]);
    expect(relay.delivered).toHaveLength(60);
    // The first burst opens 8 (6 refused); after that only the 2 working sessions are used.
    expect(relay.sessions).toBeLessThanOrEqual(8);
  });

  test("a relay answering 421 at MAIL FROM (throttling): the waiting messages fail with it, not one new session each", async () => {
    const relay = await startFakeRelay({ closeOnMail421: true });
    cleanups.push(() => relay.close());
    const p = pool(relay.port, 2);
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => send(p, `m${i}@t.test`)));
    expect(results.every((r) => !r.ok && (r.error as { responseCode?: number }).responseCode === 421)).toBe(true);
    // The two sessions opened at once; none after (before: one more per waiting message).
    expect(relay.sessions).toBeLessThanOrEqual(2);
    expect(relay.delivered).toHaveLength(0);
  });

  test("close(): waiting messages fail marked as never started, later sends too; a busy one is not; nothing hangs", async () => {
    const relay = await startFakeRelay({ stallRcpt: "stall@t.test" });
    cleanups.push(() => relay.close());
    const p = pool(relay.port);
    const busy = send(p, "stall@t.test", AbortSignal.timeout(1_000));
    const queued = send(p, "queued@t.test");
    // Its data at the relay, not a time: one still waiting for the connection at close() is
    // failed as never started like the queued one.
    await waitFor(() => relay.stalled === 1, 900, "the busy message's data at the relay");
    p.close();
    const waited = await queued;
    expect(errorCode(waited)).toBe("ECONNECTION");
    // relay.ts hands exactly these to the relay a reload brought (no byte of them was sent).
    expect(!waited.ok && isPoolClosedError(waited.error)).toBe(true);
    const late = await send(p, "late@t.test");
    expect(!late.ok && isPoolClosedError(late.error)).toBe(true);
    const stalled = await busy;
    expect(errorCode(stalled)).toBe("AbortError");
    expect(!stalled.ok && isPoolClosedError(stalled.error)).toBe(false);
    expect(relay.delivered).toEqual([]); // the waiting and late ones were never sent
  });

  test("close() while a message is mid-DATA: it finishes on its session, then the session says QUIT", async () => {
    const relay = await startFakeRelay({ dataReplyDelayMs: 300 });
    cleanups.push(() => relay.close());
    const p = pool(relay.port);
    const busy = send(p, "slow@t.test");
    // The end of data at the relay, its reply 300 ms away (not a time: a message still waiting
    // for the connection at close() is failed as never started).
    await waitFor(() => relay.delivered.length === 1, 5_000, "the message's data at the relay");
    const closed = p.close();
    expect(errorCode(await busy)).toBe("ok");
    await closed;
    await waitFor(() => relay.ended === 1, 2_000, "the session's end at the relay");
    expect(relay.quits).toBe(1);
  });

  test("sessions end with QUIT, not a bare close: on close(), when idle, when retired, after a refused login", async () => {
    const relay = await startFakeRelay();
    cleanups.push(() => relay.close());
    /** QUITs and ended sessions at the relay once `n` sessions have ended there. */
    const endings = async (r: FakeRelay, n: number) => {
      for (let i = 0; i < 100 && r.ended < n; i++) await Bun.sleep(20);
      return { quits: r.quits, ended: r.ended };
    };
    const closing = pool(relay.port);
    expect(errorCode(await send(closing, "c@t.test"))).toBe("ok");
    await closing.close();
    expect(await endings(relay, 1)).toEqual({ quits: 1, ended: 1 });

    const idle = pool(relay.port, 1, { idleTimeoutMs: 100 });
    expect(errorCode(await send(idle, "i@t.test"))).toBe("ok");
    expect(await endings(relay, 2)).toEqual({ quits: 2, ended: 2 });

    const recycling = pool(relay.port, 1, { maxMessagesPerConnection: 1 });
    for (const to of ["r1@t.test", "r2@t.test"]) expect(errorCode(await send(recycling, to))).toBe("ok");
    await recycling.close();
    expect(await endings(relay, 4)).toEqual({ quits: 4, ended: 4 });
    expect(relay.sessions).toBe(4);

    const refusing = await startFakeRelay({ refuseAuth: true });
    cleanups.push(() => refusing.close());
    const login = pool(refusing.port, 1, { auth: { user: "u", pass: "wrong" } });
    expect(errorCode(await send(login, "a@t.test"))).toBe("EAUTH");
    expect(await endings(refusing, 1)).toEqual({ quits: 1, ended: 1 });
  });
});
