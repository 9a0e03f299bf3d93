/**
 * PROXY protocol v1 and v2 in front of the SMTP session: the carried client address is the
 * one used for the allow-list and the envelope; untrusted senders, missing, malformed,
 * over-long, endless or unfinished headers are refused without harm to the server.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { createConnection } from "node:net";
import { RawClient, greet, sendMail, startTestServer, type TestServer } from "./helpers.ts";
import { until } from "./serve-process.ts";
import { parseProxyHeader, startsLikeProxyHeader } from "../../src/smtp/proxy-protocol.ts";

let server: TestServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
}, 60_000);

const SIG = Buffer.from("0d0a0d0a000d0a515549540a", "hex");

function v2(family: number, addr: Buffer, command = 0x21, tlv = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(4);
  head[0] = command;
  head[1] = family;
  head.writeUInt16BE(addr.length + tlv.length, 2);
  return Buffer.concat([SIG, head, addr, tlv]);
}

function v2Tcp4(src: string, srcPort: number): Buffer {
  const a = Buffer.alloc(12);
  src.split(".").forEach((o, i) => (a[i] = Number(o)));
  [10, 0, 0, 1].forEach((o, i) => (a[4 + i] = o));
  a.writeUInt16BE(srcPort, 8);
  a.writeUInt16BE(25, 10);
  return v2(0x11, a);
}

function v2Tcp6(): Buffer {
  const a = Buffer.alloc(36);
  Buffer.from("20010db8000000000000000000000042", "hex").copy(a, 0);
  a[31] = 1;
  a.writeUInt16BE(40000, 32);
  a.writeUInt16BE(25, 34);
  return v2(0x21, a, 0x21, Buffer.from([0xea, 0x00, 0x03, 0x61, 0x62, 0x63])); // an AWS-style TLV
}

const proxyEnv = (extra: Record<string, string> = {}) => ({ SMTP_PROXY_PROTOCOL: "true", ...extra });

describe("PROXY protocol", () => {
  test("v1 TCP4: the carried address is the client everywhere", async () => {
    server = await startTestServer({ env: proxyEnv() });
    const c = await RawClient.connect(server.port, "127.0.0.1", "PROXY TCP4 203.0.113.9 10.0.0.1 51000 25\r\n");
    await greet(c);
    expect(await sendMail(c)).toStartWith("250");
    const m = server.sink.messages[0];
    expect(m?.envelope.clientIp).toBe("203.0.113.9");
    expect(m?.raw.toString("latin1")).toContain("([203.0.113.9])");
  });

  test("v2 TCP4 and TCP6 (with TLVs), header and EHLO in separate segments", async () => {
    server = await startTestServer({ env: proxyEnv() });
    const a = await RawClient.connect(server.port, "127.0.0.1", v2Tcp4("198.51.100.7", 1234));
    await greet(a);
    expect(await sendMail(a)).toStartWith("250");
    const b = await RawClient.connect(server.port, "127.0.0.1", v2Tcp6());
    await greet(b);
    expect(await sendMail(b)).toStartWith("250");
    expect(server.sink.messages.map((m) => m.envelope.clientIp)).toEqual(["198.51.100.7", "2001:db8::42"]);
  });

  test("v2 LOCAL (health check) and v1 UNKNOWN use the proxy's own address", async () => {
    server = await startTestServer({ env: proxyEnv() });
    const a = await RawClient.connect(server.port, "127.0.0.1", v2(0x00, Buffer.alloc(0), 0x20));
    await greet(a);
    expect(await sendMail(a)).toStartWith("250");
    const b = await RawClient.connect(server.port, "127.0.0.1", "PROXY UNKNOWN\r\n");
    await greet(b);
    expect(await sendMail(b)).toStartWith("250");
    expect(server.sink.messages.map((m) => m.envelope.clientIp)).toEqual(["127.0.0.1", "127.0.0.1"]);
  });

  test("the allow-list applies to the carried address", async () => {
    server = await startTestServer({ env: proxyEnv({ SMTP_ALLOWED_IPS: "203.0.113.0/24" }) });
    const ok = await RawClient.connect(server.port, "127.0.0.1", "PROXY TCP4 203.0.113.9 10.0.0.1 51000 25\r\n");
    await greet(ok);
    const no = await RawClient.connect(server.port, "127.0.0.1", "PROXY TCP4 192.0.2.1 10.0.0.1 51000 25\r\n");
    expect(await no.reply()).toMatch(/^554 5\.7\.1 /);
  });

  test("a sender outside SMTP_PROXY_TRUSTED gets 421, even with a valid header", async () => {
    server = await startTestServer({ env: proxyEnv({ SMTP_PROXY_TRUSTED: "10.9.9.9/32" }) });
    const c = await RawClient.connect(server.port, "127.0.0.1", "PROXY TCP4 203.0.113.9 10.0.0.1 51000 25\r\n");
    expect(await c.reply()).toMatch(/^421 /);
    expect(await c.waitClose()).toBe(true);
  });

  test("missing header (client speaks SMTP), over-long, endless, malformed, disconnect: refused, server fine", async () => {
    server = await startTestServer({ env: proxyEnv(), limits: { proxyHeaderTimeoutMs: 300 } });
    const cases: (string | Buffer)[] = [
      "EHLO client.example\r\n",
      `PROXY TCP4 ${"1".repeat(200)}\r\n`,
      `PROXY TCP4 203.0.113.9 10.0.0.1 51000 25\n`,
      "PROXY TCP4 999.0.113.9 10.0.0.1 51000 25\r\n",
      "PROXY TCP6 203.0.113.9 10.0.0.1 51000 25\r\n",
      Buffer.concat([v2(0x11, Buffer.alloc(12)).subarray(0, 14), Buffer.from([0xff, 0xff])]),
      v2(0x12, Buffer.alloc(12)),
      v2(0x11, Buffer.alloc(6)), // a TCP4 block too short for its ports
    ];
    for (const preface of cases) {
      const c = await RawClient.connect(server.port, "127.0.0.1", preface);
      expect(await c.reply(2000)).toMatch(/^421 4\.7\.0 .*PROXY/);
      expect(await c.waitClose(3000)).toBe(true);
    }
    const endless = await RawClient.connect(server.port, "127.0.0.1", "PROXY TCP4 203.0.113.9");
    expect(await endless.reply(2000)).toMatch(/^421 /);
    const silent = await RawClient.connect(server.port, "127.0.0.1");
    // Nothing came: said so, not "Invalid PROXY protocol header".
    expect(await silent.reply(2000)).toMatch(/^421 4\.7\.0 \S+ No PROXY protocol header in time$/);
    const gone = await RawClient.connect(server.port, "127.0.0.1", "PROXY TCP4 20");
    gone.end();
    await Bun.sleep(100);
    const good = await RawClient.connect(server.port, "127.0.0.1", "PROXY TCP4 203.0.113.9 10.0.0.1 51000 25\r\n");
    await greet(good);
    expect(await sendMail(good)).toStartWith("250");
    expect(server.sink.messages).toHaveLength(1);
  });

  test("health checks (connect and reset, with or without a header) are debug lines, not warnings or sessions", async () => {
    server = await startTestServer({ env: proxyEnv() });
    const port = server.port;
    const probe = (preface: Buffer | string | null, close: "end" | "reset", afterMs = 0) =>
      new Promise<void>((done) => {
        const s = createConnection({ port, host: "127.0.0.1" }, async () => {
          if (preface !== null) s.write(preface);
          await Bun.sleep(afterMs);
          if (close === "end") s.end();
          else s.resetAndDestroy();
          setTimeout(done, 50);
        });
        s.on("error", () => {});
      });
    const local = v2(0x00, Buffer.alloc(0), 0x20);
    const ownV1 = "PROXY TCP4 127.0.0.1 127.0.0.1 40000 25\r\n"; // HAProxy's v1 check: its own endpoints
    for (const close of ["end", "reset"] as const) {
      await probe(null, close);
      await probe(null, close, 100);
      await probe(local, close);
      await probe(local, close, 200); // after the banner
      await probe(ownV1, close, 200);
      await probe("PROXY UNKNOWN\r\n", close, 200);
    }
    await Bun.sleep(300);
    const noisy = server.logs.lines.filter((l) => l.level !== "debug");
    expect(noisy).toEqual([]);
    expect(server.sessions).toEqual([]);
    const quiet = server.logs.lines.filter((l) => l.msg === "smtp session");
    expect(quiet.length).toBeGreaterThan(0);
    expect(quiet.every((l) => l.fields.client === "127.0.0.1")).toBe(true);

    // A real client's session, even one that leaves before the greeting, stays an info line
    // naming the client; so does a proxy session that started a transaction.
    await probe("PROXY TCP4 203.0.113.9 10.0.0.1 51000 25\r\n", "end");
    const own = await RawClient.connect(port, "127.0.0.1", local);
    await greet(own);
    expect(await own.cmd("MAIL FROM:<a@sender.example>")).toStartWith("250");
    own.end();
    await until("two sessions", async () => server?.sessions.length === 2);
    expect(server.sessions.map((s) => s.client).sort()).toEqual(["127.0.0.1", "203.0.113.9"]);
    // A proxy that sends part of a header and leaves is still a warning and a refused session.
    await probe("PROXY TCP4 20", "end");
    await until("the refusal", async () => server?.sessions.length === 3);
    expect(server.logs.lines.filter((l) => l.level === "warn").map((l) => l.fields.reason)).toEqual(["disconnected before the PROXY header"]);
  }, 15_000);

  test("an allow-list without the proxy's own address: its checks get 554 as debug lines, clients outside it still a refused session", async () => {
    server = await startTestServer({ env: proxyEnv({ SMTP_ALLOWED_IPS: "203.0.113.0/24" }) });
    const local = v2(0x00, Buffer.alloc(0), 0x20);
    for (let i = 0; i < 3; i++) {
      const check = await RawClient.connect(server.port, "127.0.0.1", local);
      expect(await check.reply()).toStartWith("554 5.7.1");
      check.end();
    }
    const outsider = await RawClient.connect(server.port, "127.0.0.1", "PROXY TCP4 198.51.100.7 10.0.0.1 51000 25\r\n");
    expect(await outsider.reply()).toStartWith("554 5.7.1");
    outsider.end();
    await until("the outsider's refusal", async () => server?.sessions.length === 1);
    await Bun.sleep(200);
    expect(server.sessions.map((s) => s.client)).toEqual(["198.51.100.7"]);
    expect(server.logs.lines.filter((l) => l.level !== "debug" && l.fields.client === "127.0.0.1")).toEqual([]);
    expect(server.logs.lines.filter((l) => l.msg === "proxy's own connection refused (a health check)")).toHaveLength(3);
  });

  test("parser units: incomplete vs invalid, byte caps", () => {
    expect(parseProxyHeader(Buffer.from("PROX")).kind).toBe("incomplete");
    expect(parseProxyHeader(Buffer.from("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nEHLO")).kind).toBe("ok");
    expect(parseProxyHeader(Buffer.from("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nEHLO"))).toMatchObject({ consumed: 32 });
    expect(parseProxyHeader(Buffer.from("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n")).kind).toBe("invalid");
    // An IPv6 zone id is no part of the PROXY format (it would land in the Received header).
    expect(parseProxyHeader(Buffer.from("PROXY TCP6 fe80::1%eth0 ::1 1234 25\r\n")).kind).toBe("invalid");
    expect(parseProxyHeader(Buffer.from("PROXY TCP6 fe80::1 ::1 1234 25\r\n")).kind).toBe("ok");
    expect(parseProxyHeader(Buffer.from(`PROXY ${"x".repeat(110)}`)).kind).toBe("invalid");
    expect(parseProxyHeader(SIG.subarray(0, 5)).kind).toBe("incomplete");
    expect(parseProxyHeader(v2Tcp4("1.2.3.4", 5).subarray(0, 20)).kind).toBe("incomplete");
    expect(parseProxyHeader(Buffer.concat([v2Tcp4("1.2.3.4", 5), Buffer.from("EHLO")]))).toMatchObject({ kind: "ok", consumed: 28, source: { address: "1.2.3.4", port: 5 } });
    // Address blocks shorter than their family needs (the port would be read past them).
    for (const n of [0, 4, 6, 8, 10, 11]) expect(parseProxyHeader(v2(0x11, Buffer.alloc(n)))).toEqual({ kind: "invalid", reason: "PROXY v2 short IPv4 block" });
    for (const n of [0, 16, 32, 35]) expect(parseProxyHeader(v2(0x21, Buffer.alloc(n)))).toEqual({ kind: "invalid", reason: "PROXY v2 short IPv6 block" });
    expect(parseProxyHeader(v2(0x11, Buffer.alloc(12))).kind).toBe("ok");
    // The v2 length cap: a header declaring more than 1024 bytes is refused at once, not waited for.
    const declared = (n: number) => Buffer.concat([SIG, Buffer.from([0x21, 0x11, n >> 8, n & 0xff])]);
    expect(parseProxyHeader(declared(1025))).toEqual({ kind: "invalid", reason: "PROXY v2 header too long" });
    expect(parseProxyHeader(declared(1024)).kind).toBe("incomplete");
  });

  test("startsLikeProxyHeader: v1 and v2 openings, not SMTP or a short chunk", () => {
    expect(startsLikeProxyHeader(Buffer.from("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"))).toBe(true);
    expect(startsLikeProxyHeader(Buffer.from("PROXY UNKNOWN\r\n"))).toBe(true);
    expect(startsLikeProxyHeader(v2Tcp4("1.2.3.4", 5))).toBe(true);
    expect(startsLikeProxyHeader(SIG)).toBe(true);
    for (const other of ["EHLO proxy.example\r\n", "PROXY", "\r\n", "proxy tcp4"]) expect(startsLikeProxyHeader(Buffer.from(other))).toBe(false);
    expect(startsLikeProxyHeader(SIG.subarray(0, 11))).toBe(false);
  });
});
