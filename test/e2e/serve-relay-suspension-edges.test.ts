/**
 * Relay suspension (queue/relay-suspension.ts) against the real `mailgw serve`, in the cases
 * serve-relay-suspension.test.ts leaves out: a relay that takes the connection and then closes it
 * or goes silent mid-session (a failure of the relay, as Postfix counts "lost connection" and
 * "conversation timed out": not a reply to the message); a restart or a reload with another relay;
 * what /stats.json and `queue list` show while the probe a restart sends is under way.
 */
import { expect, test } from "bun:test";
import { createServer, type Server, type Socket } from "node:net";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { mailgwQueue, serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";
import { freePorts } from "../packaging/binary.ts";
import { logged, rows, send, SUSPENDED } from "./relay-suspension-helpers.ts";
import { waitFor } from "../delivery/helpers.ts";

/** Ports of this file (the range the test run gave it). */
// Fixed for the file (serve restarts on them, a relay comes up later on its port), picked free at load.
const [relayPort, smtpPort, httpPort, otherRelayPort] = await freePorts(4);
const PORTS = { relay: relayPort ?? 0, smtp: smtpPort ?? 0, http: httpPort ?? 0, otherRelay: otherRelayPort ?? 0 };

const RULES = `domains: [company.com]
rules:
  - name: forward
    priority: 10
    category: sales
    action: forward
    forward_to: [sales@forward.example]
    conditions:
      - { field: subject, operator: contains, value: fwd }
`;

const BACK = "relay is back: the suspension is over, deferred forwards are due now";

/**
 * A plain SMTP relay (no TLS, no AUTH) that greets and answers EHLO, then either takes every
 * message (`ok`) or closes the connection at MAIL FROM (`close-at-mail`: a relay whose backend
 * broke, a proxy in front of it cutting sessions), or does so 1.5 s after MAIL FROM
 * (`close-late-at-mail`), or never greets (`silent`). Counts connections and MAIL commands, and
 * keeps the subjects taken.
 */
interface RawRelay {
  mode: "ok" | "close-at-mail" | "close-late-at-mail" | "silent";
  connections: number;
  mails: number;
  subjects: string[];
  close(): Promise<void>;
}

async function rawRelay(port: number, mode: RawRelay["mode"]): Promise<RawRelay> {
  const sockets = new Set<Socket>();
  const relay: RawRelay = { mode, connections: 0, mails: 0, subjects: [], close: async () => undefined };
  const server: Server = createServer((s) => {
    relay.connections++;
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => undefined);
    if (relay.mode === "silent") return;
    s.write("220 relay.test ESMTP\r\n");
    let buf = "";
    let data: string | null = null;
    s.on("data", (chunk: Buffer) => {
      buf += chunk.toString("latin1");
      for (;;) {
        if (data !== null) {
          const end = buf.indexOf("\r\n.\r\n");
          if (end === -1) return;
          relay.subjects.push(/^Subject: (.*)$/m.exec(buf.slice(0, end))?.[1]?.trim() ?? "");
          buf = buf.slice(end + 5);
          data = null;
          s.write("250 2.0.0 queued\r\n");
          continue;
        }
        const eol = buf.indexOf("\r\n");
        if (eol === -1) return;
        const verb = buf.slice(0, 4).toUpperCase();
        buf = buf.slice(eol + 2);
        if (verb === "MAIL") relay.mails++;
        if (verb === "EHLO") s.write("250-relay.test\r\n250 8BITMIME\r\n");
        else if (verb === "MAIL" && relay.mode === "close-at-mail") return void s.destroy();
        else if (verb === "MAIL" && relay.mode === "close-late-at-mail") return void setTimeout(() => s.destroy(), 1500);
        else if (verb === "DATA") {
          data = "";
          s.write("354 go ahead\r\n");
        } else if (verb === "QUIT") return void s.end("221 bye\r\n");
        else s.write("250 ok\r\n");
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  relay.close = () => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  });
  return relay;
}

function writeEnv(dir: string, vars: Record<string, string>): void {
  writeFileSync(join(dir, ".env"), Object.entries(vars).map(([k, v]) => `${k}=${v}\n`).join(""));
}

async function startGateway(vars: Record<string, string>, dir = serveDir()): Promise<ServeProcess> {
  writeFileSync(join(dir, "rules.yaml"), RULES);
  writeEnv(dir, vars);
  return startServe("source", dir, { SMTP_PORT: String(PORTS.smtp), HTTP_PORT: String(PORTS.http) });
}

const plainRelay = (port: number) => ({ RELAY_SMTP_HOST: "127.0.0.1", RELAY_SMTP_PORT: String(port), RELAY_SMTP_SECURE: "none" });


test("a relay that accepts the connection but closes it at MAIL FROM is suspended: no 'relay is back', no connection per forward", async () => {
  const relay = await rawRelay(PORTS.relay, "close-at-mail");
  const serve = await startGateway({ ...plainRelay(PORTS.relay), QUEUE_RETRY_BASE_SECONDS: "1" });
  try {
    const subjects = Array.from({ length: 20 }, (_, i) => `fwd ${String(i).padStart(2, "0")}`);
    await send(serve, subjects, 100);
    await serve.waitForLog((l) => l.msg === SUSPENDED);
    await Bun.sleep(3000); // probes at 1 s and 2 s after it: both fail the same way
    // Before: the lost connection counted as "the relay works" (a reply to the message): each
    // probe ended the suspension with "relay is back", and every forward had a connection of its
    // own on its own backoff (60 connections for 20 forwards within these 5 s).
    expect(logged(serve, BACK)).toEqual([]);
    expect(logged(serve, SUSPENDED)).toHaveLength(1);
    console.error(`relay closing at MAIL FROM: ${relay.connections} connections for 20 forwards`);
    expect(relay.connections).toBeLessThanOrEqual(6);
    const waiting = rows(serve);
    expect(waiting.filter((r) => r.attempts > 3)).toEqual([]);
    expect(waiting.filter((r) => r.attempts === 0).length).toBeGreaterThanOrEqual(15);
    for (const r of waiting) expect(r.last_error ?? "").toStartWith("relay suspended: ");

    relay.mode = "ok";
    await waitFor(() => relay.subjects.length >= 20, 15_000, "the 20 forwards at the relay once it works");
    await Bun.sleep(300);
    expect(relay.subjects.sort()).toEqual(subjects);
    expect(logged(serve, BACK)).toHaveLength(1);
    // The 19 that waited besides the probe. Before: 0, as they were due already when the probe
    // (sent at the suspension's end) succeeded, so the line hid the backlog it released.
    expect(logged(serve, BACK)[0]?.forwards_due).toBe(19);
  } finally {
    expect(await serve.stop()).toBe(0);
    await relay.close();
  }
}, 60_000);

test("restarted with another relay: the forwards the old relay's suspension held go to it at once, not at that suspension's end", async () => {
  // Nothing listens on PORTS.relay: connection refused. A long backoff: only the new relay can make them go within the test.
  let serve = await startGateway({ ...plainRelay(PORTS.relay), QUEUE_RETRY_BASE_SECONDS: "600" });
  const other = await rawRelay(PORTS.otherRelay, "ok");
  try {
    const subjects = ["fwd a", "fwd b", "fwd c"];
    await send(serve, subjects, 100);
    await serve.waitForLog((l) => l.msg === SUSPENDED);
    await waitFor(() => rows(serve).every((r) => r.state === "deferred"), 5_000, "all three deferred");
    expect(await serve.stop()).toBe(0);

    // The admin moves to another smarthost (RELAY_SMTP_PORT here) and restarts.
    writeEnv(serve.dir, { ...plainRelay(PORTS.otherRelay), QUEUE_RETRY_BASE_SECONDS: "600" });
    serve = await startServe("source", serve.dir, { SMTP_PORT: String(PORTS.smtp), HTTP_PORT: String(PORTS.http) });
    // Before: the old suspension was forgotten but its forwards kept its end (10 minutes here, up
    // to an hour), still listed as "relay suspended: …" though no relay was.
    await waitFor(() => other.subjects.length >= 3, 5_000, "the 3 forwards at the new relay right after the restart");
    expect(other.subjects.sort()).toEqual(subjects);
    await waitFor(() => rows(serve).every((r) => r.state === "delivered"), 5_000, "all delivered");
    const line = await serve.waitForLog((l) => l.msg === "the relay suspended when serve stopped is no longer configured: the forwards it held are due now");
    expect([line.suspended_relay, line.forwards_due]).toEqual([`127.0.0.1:${PORTS.relay}`, 3]);
  } finally {
    expect(await serve.stop()).toBe(0);
    await other.close();
  }
}, 60_000);

test("restarted while suspended: /stats.json, the stats page and queue list show the probe going now, not the old suspension's end", async () => {
  let serve = await startGateway({ ...plainRelay(PORTS.relay), QUEUE_RETRY_BASE_SECONDS: "600" });
  let relay: RawRelay | null = null;
  try {
    await send(serve, ["fwd a", "fwd b"], 100);
    await serve.waitForLog((l) => l.msg === SUSPENDED);
    await waitFor(() => rows(serve).every((r) => r.state === "deferred"), 5_000, "both deferred");
    expect(await serve.stop()).toBe(0);

    // The relay now takes connections but never greets: the probe at start waits 15 s for it.
    relay = await rawRelay(PORTS.relay, "silent");
    const restarted = Date.now();
    serve = await startServe("source", serve.dir, { SMTP_PORT: String(PORTS.smtp), HTTP_PORT: String(PORTS.http) });
    await waitFor(() => relay !== null && relay.connections === 1, 5_000, "the probe at start");
    const stats = (await (await fetch(`${serve.httpUrl}/stats.json`)).json()) as { relay: { suspended: { until: string } | null } };
    // Before: the end of the suspension before the restart, ten minutes ahead, while the probe was under way.
    expect(Date.parse(stats.relay.suspended?.until ?? "")).toBeLessThanOrEqual(Date.now());
    expect(Date.parse(stats.relay.suspended?.until ?? "")).toBeGreaterThanOrEqual(restarted - 1000);
    expect((await mailgwQueue(serve.dir, "list")).stdout).toContain("(next probe: now)");
  } finally {
    expect(await serve.stop()).toBe(0);
    await relay?.close();
  }
}, 60_000);

test("reloaded to another relay while the old one holds forwards: the old one failing them then does not suspend the new one", async () => {
  const old = await rawRelay(PORTS.relay, "close-late-at-mail");
  const other = await rawRelay(PORTS.otherRelay, "ok");
  const serve = await startGateway({ ...plainRelay(PORTS.relay), QUEUE_RETRY_BASE_SECONDS: "600" });
  try {
    await send(serve, ["fwd a", "fwd b"]);
    // Claimed is not yet sent: a forward still waiting for its connection at the reload goes to
    // the new relay (rightly). The case here is two already in their sessions at the old one.
    await waitFor(() => old.mails >= 2, 5_000, "both in a session at the old relay (MAIL FROM sent)");
    writeEnv(serve.dir, { ...plainRelay(PORTS.otherRelay), QUEUE_RETRY_BASE_SECONDS: "600" });
    serve.proc.kill("SIGHUP");
    await serve.waitForLog((l) => l.msg === "relay settings reloaded");
    // The old relay closes the sessions the two were on (their sessions finish there).
    await waitFor(() => rows(serve).every((r) => r.state !== "delivering"), 5_000, "the old relay's failures recorded");
    await send(serve, ["fwd c"]);
    // Before: the new relay was suspended for 10 minutes with the old one's error, "fwd c" with it.
    await waitFor(() => other.subjects.length >= 1, 5_000, "the new forward at the new relay");
    expect(other.subjects).toEqual(["fwd c"]);
    expect(logged(serve, SUSPENDED)).toEqual([]);
    // The two the old relay failed wait for their own retry, as any failed attempt.
    for (const r of rows(serve).slice(0, 2)) expect([r.state, r.last_error]).toEqual(["deferred", "ECONNECTION: Connection closed unexpectedly"]);
  } finally {
    expect(await serve.stop()).toBe(0);
    await old.close();
    await other.close();
  }
}, 60_000);
