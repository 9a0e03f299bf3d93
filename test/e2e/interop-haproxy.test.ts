/**
 * The real `mailgw serve` behind a real HAProxy (`mode tcp`), one frontend per way HAProxy
 * speaks the PROXY protocol: `send-proxy` (v1), `send-proxy-v2`, and v2 with TLVs
 * (`proxy-v2-options ssl,crc32c,unique-id`). HAProxy reaches mailgw from 127.0.0.1; clients
 * connect from 127.0.0.2.. and ::1, so the address mailgw uses is the carried one.
 *
 * Every backend has HAProxy health checks every 2 s: v1 connect-only (HAProxy sends its own
 * endpoints and resets at once), v2 LOCAL waiting for the 220 banner (`tcp-check expect`), v2
 * LOCAL with TLVs and `option smtpchk` (EHLO), and plain TCP connects with no header (`check
 * port`). Over 10 s they must keep the servers UP and leave nothing above debug level in
 * mailgw's log and nothing in its session counter.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createServer, type Server } from "node:net";
import { parseProxyHeader } from "../../src/smtp/proxy-protocol.ts";
import { bigMessageOverTls, mailFrom, messageRow, queuedId, SWAKS_TLS, swaks, viaProxy } from "../helpers/proxied-mail.ts";
import { haproxySkipReason, haproxyStats, loopbackSkipReason, pickPorts, startHaproxy, type RunningProxy } from "../helpers/real-proxies.ts";
import { makeCert } from "../smtp/helpers.ts";
import { serveDir, startServe, until, type ServeProcess } from "../smtp/serve-process.ts";

const SKIP = haproxySkipReason() ?? (await loopbackSkipReason());
if (SKIP) console.warn(`skip: HAProxy interop tests: ${SKIP}`);
if (!SKIP && !SWAKS_TLS) console.warn("skip (swaks leg of the HAProxy STARTTLS test): swaks with Net::SSLeay not installed (apt-get install -y swaks libnet-ssleay-perl)");

const CHECK_WINDOW_MS = 10_000;
const TLVS = "proxy-v2-options ssl,crc32c,unique-id";

function haproxyConfig(p: { v1: number; v2: number; tlv: number; capture: number; mailgw: number; captureTarget: number }): string {
  const frontend = (name: string, port: number) => `frontend ${name}\n  bind 127.0.0.1:${port}\n  bind [::1]:${port}\n  default_backend ${name}`;
  const server = `server mailgw 127.0.0.1:${p.mailgw}`;
  return `global
  stats socket {{dir}}/admin.sock mode 600 level admin
defaults
  mode tcp
  timeout connect 5s
  timeout client 10m
  timeout server 10m
  default-server inter 2s fastinter 2s downinter 2s
${frontend("v1", p.v1)}
backend v1
  ${server} send-proxy check
${frontend("v2", p.v2)}
backend v2
  option tcp-check
  tcp-check expect rstring ^220
  ${server} send-proxy-v2 check
${frontend("tlv", p.tlv)}
  unique-id-format %{+X}o\\ %ci:%cp_%fi:%fp_%Ts_%rt:%pid
backend tlv
  option smtpchk EHLO haproxy.check
  ${server} send-proxy-v2 ${TLVS} check
# checks without a PROXY header: a check port turns it off for them
backend tcponly
  ${server} send-proxy-v2 check port ${p.mailgw}
${frontend("capture", p.capture)}
  unique-id-format %{+X}o\\ %ci:%cp_%fi:%fp_%Ts_%rt:%pid
backend capture
  server cap 127.0.0.1:${p.captureTarget} send-proxy-v2 ${TLVS}
`;
}

/** A listener that keeps the first bytes of each connection: what HAProxy sends to a backend. */
function captureServer(port: number): { server: Server; first: Promise<Buffer> } {
  let got: (b: Buffer) => void = () => {};
  const first = new Promise<Buffer>((resolve) => (got = resolve));
  const server = createServer((s) => {
    s.on("error", () => {});
    s.once("data", (d: Buffer) => {
      got(d);
      s.destroy();
    });
  }).listen(port, "127.0.0.1");
  return { server, first };
}

let serve: ServeProcess;
let haproxy: RunningProxy;
let capture: ReturnType<typeof captureServer>;
let ports: { v1: number; v2: number; tlv: number; capture: number };
let startedAt = 0;

beforeAll(async () => {
  if (SKIP) return;
  const dir = serveDir();
  const { key, cert } = makeCert(dir);
  serve = await startServe("source", dir, { SMTP_PROXY_PROTOCOL: "true", SMTP_PROXY_TRUSTED: "127.0.0.1/32", SMTP_TLS_KEY: key, SMTP_TLS_CERT: cert, LOG_LEVEL: "debug" });
  const [v1 = 0, v2 = 0, tlv = 0, cap = 0, captureTarget = 0] = await pickPorts(5, 29000, 500);
  ports = { v1, v2, tlv, capture: cap };
  capture = captureServer(captureTarget);
  haproxy = await startHaproxy(haproxyConfig({ ...ports, mailgw: serve.smtpPort, captureTarget }), v1);
  startedAt = Date.now();
}, 30_000);

afterAll(async () => {
  await haproxy?.stop();
  capture?.server.close();
  if (serve?.proc.exitCode === null) expect(await serve.stop()).toBe(0);
}, 60_000);

const session = (id: string) => serve.waitForLog((l) => l.msg === "smtp session" && l.id === id);

describe.skipIf(SKIP !== null)("HAProxy mode tcp in front of mailgw serve", () => {
  test.each([
    ["send-proxy (v1)", "v1", "127.0.0.2"],
    ["send-proxy-v2", "v2", "127.0.0.3"],
    ["send-proxy-v2 with TLVs", "tlv", "127.0.0.4"],
  ] as const)("%s: the carried IPv4 and IPv6 addresses are the client", async (_name, frontend, source) => {
    for (const from of [source, "::1"]) {
      const id = queuedId(await mailFrom(ports[frontend], from));
      expect(await session(id)).toMatchObject({ client: from, helo: `client-${from.replaceAll(/[.:]/g, "-")}.example` });
      expect(messageRow(serve.dir, id)).toMatchObject({ client_ip: from });
    }
  });

  test("HAProxy really sends the TLVs (CRC32C, unique id, SSL) that mailgw skips", async () => {
    const c = await viaProxy(ports.capture, "127.0.0.6");
    const header = await capture.first;
    c.end();
    const parsed = parseProxyHeader(header);
    expect(parsed).toMatchObject({ kind: "ok", version: 2, source: { address: "127.0.0.6" } });
    const types: number[] = [];
    for (let at = 16 + 12; at + 3 <= header.length; at += 3 + header.readUInt16BE(at + 1)) types.push(header[at] ?? -1);
    expect(types.sort((a, b) => a - b)).toEqual([0x03, 0x05, 0x20]);
  });

  test("STARTTLS through send-proxy (swaks) and send-proxy-v2 (10 MB, arrives whole)", async () => {
    if (SWAKS_TLS) {
      const r = await swaks(ports.v1, "127.0.0.7", true);
      expect({ code: r.code, tls: r.out.includes("TLS started"), queued: /250 2\.0\.0 Queued as/.test(r.out) }).toEqual({ code: 0, tls: true, queued: true });
      expect(await serve.waitForLog((l) => l.msg === "smtp session" && l.client === "127.0.0.7")).toMatchObject({ tls: true });
    }
    const id = await bigMessageOverTls(ports.v2, "127.0.0.8", serve.dir);
    expect(await session(id)).toMatchObject({ client: "127.0.0.8", tls: true });
  }, 60_000);

  test("health checks for 10 s: servers UP, nothing above debug in the log, no sessions counted", async () => {
    await Bun.sleep(Math.max(0, startedAt + CHECK_WINDOW_MS - Date.now()));
    const servers = (await haproxyStats(haproxy)).filter((r) => r.svname === "mailgw");
    expect(servers.map((r) => [r.pxname, r.status, r.check_status?.replace(/^\* /, ""), r.chkfail])).toEqual([
      ["v1", "UP", "L4OK", "0"],
      ["v2", "UP", "L7OK", "0"],
      ["tlv", "UP", "L7OK", "0"],
      ["tcponly", "UP", "L4OK", "0"],
    ]);
    // The checks did reach mailgw, at debug level: smtpchk's and tcp-check's as sessions from
    // HAProxy's address; connect-only ones mostly reset before mailgw even saw an address.
    const debug = serve.logs.filter((l) => l.level === "debug");
    const probes = debug.filter((l) => l.msg === "smtp session" && l.client === "127.0.0.1");
    expect(probes.filter((l) => l.helo === "haproxy.check").length).toBeGreaterThanOrEqual(4);
    const resets = debug.filter((l) => /^connection reset before|^proxy connection closed before/.test(String(l.msg)));
    expect(probes.filter((l) => l.helo === undefined).length + resets.length).toBeGreaterThanOrEqual(8);
    const loud = serve.logs.filter((l) => l.level !== "debug" && l.level !== "info" && !String(l.msg).startsWith("no relay configured"));
    expect(loud).toEqual([]);
    const sessions = serve.logs.filter((l) => l.msg === "smtp session" && l.level === "info");
    expect(sessions.filter((l) => l.client === "127.0.0.1")).toEqual([]);
    // The session counter counts the clients' sessions only (it is flushed every 2 s).
    await until("session counter flushed", async () => (await countedSessions()) === sessions.length, 6000);
    expect(haproxy.output()).not.toContain("DOWN");
  }, 30_000);
});

async function countedSessions(): Promise<number> {
  const text = await (await fetch(`${serve.httpUrl}metrics`)).text();
  return [...text.matchAll(/^mailgw_smtp_sessions_total\{[^}]*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
}
