/**
 * resolveTxt() against a real DNS server on loopback (UDP and TCP): a record of several
 * character-strings stays one record (Bun's node:dns splits it: oven-sh/bun#21370), a
 * truncated UDP answer is asked again over TCP, and NXDOMAIN, NODATA, SERVFAIL and silence
 * give node:dns's error codes, the next server being asked when one fails; a silent server does
 * not make every message's query hold a socket of its own.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { MAX_QUERIES_IN_FLIGHT, resolveTxt } from "../../src/parse/dns-txt.ts";
import { startDnsServer, type DnsServer } from "../helpers/dns-server.ts";

const LONG_SPF = `v=spf1 ${Array.from({ length: 30 }, (_, i) => `ip4:198.51.${i}.0/24`).join(" ")} -all`;

let server: DnsServer;
let silent: DnsServer;
let failing: DnsServer;

beforeAll(async () => {
  server = await startDnsServer({
    "long.example": { txt: [LONG_SPF, "site-verification=abc"] },
    "short.example": { txt: ["v=spf1 -all"] },
    "tc.example": { txt: [LONG_SPF], truncateUdp: true },
    "addr-only.example": { a: ["192.0.2.1"] },
    "servfail.example": { rcode: 2 },
  });
  silent = await startDnsServer({ "short.example": { silent: true } });
  failing = await startDnsServer({ "short.example": { rcode: 2 } });
}, 60_000);
afterAll(async () => {
  await Promise.all([server?.close(), silent?.close(), failing?.close()]);
}, 60_000);

const at = (s: DnsServer) => `${s.host}:${s.port}`;

async function errorCode(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe("resolveTxt", () => {
  test("a record longer than 255 bytes comes back as one record of its strings, beside the other records", async () => {
    const records = await resolveTxt("long.example", { servers: [at(server)] });
    expect(records.map((r) => r.join(""))).toEqual([LONG_SPF, "site-verification=abc"]);
    expect(records[0]?.length).toBe(Math.ceil(LONG_SPF.length / 255));
  });

  test("a truncated UDP answer is asked again over TCP", async () => {
    const records = await resolveTxt("tc.example", { servers: [at(server)] });
    expect(records.map((r) => r.join(""))).toEqual([LONG_SPF]);
  });

  test("NXDOMAIN is ENOTFOUND, a name without TXT records ENODATA, SERVFAIL ESERVFAIL", async () => {
    expect(await errorCode(resolveTxt("missing.example", { servers: [at(server)] }))).toBe("ENOTFOUND");
    expect(await errorCode(resolveTxt("addr-only.example", { servers: [at(server)] }))).toBe("ENODATA");
    expect(await errorCode(resolveTxt("servfail.example", { servers: [at(server)], tryTimeoutMs: 300 }))).toBe("ESERVFAIL");
  });

  test("a silent server is ETIMEOUT after two tries; a silent or failing server is skipped for the next one", async () => {
    const started = performance.now();
    expect(await errorCode(resolveTxt("short.example", { servers: [at(silent)], tryTimeoutMs: 200 }))).toBe("ETIMEOUT");
    expect(performance.now() - started).toBeLessThan(1500);
    expect(await resolveTxt("short.example", { servers: [at(silent), at(server)], tryTimeoutMs: 200 })).toEqual([["v=spf1 -all"]]);
    expect(await resolveTxt("short.example", { servers: [at(failing), at(server)], tryTimeoutMs: 200 })).toEqual([["v=spf1 -all"]]);
  });

  test("queries to a silent server hold at most MAX_QUERIES_IN_FLIGHT sockets at once; the others wait within their try's timeout", async () => {
    const open = (): number => readdirSync("/proc/self/fd").length;
    const before = open();
    const lookups = Array.from({ length: 100 }, () => errorCode(resolveTxt("short.example", { servers: [at(silent)], tryTimeoutMs: 400 })));
    await Bun.sleep(100);
    // One socket per query: 100 messages checked while the name server was silent took 100.
    expect(open() - before).toBeLessThanOrEqual(MAX_QUERIES_IN_FLIGHT + 2);
    expect(new Set(await Promise.all(lookups))).toEqual(new Set(["ETIMEOUT"]));
    // Afterwards a query gets a slot at once.
    expect(await resolveTxt("short.example", { servers: [at(server)], tryTimeoutMs: 200 })).toEqual([["v=spf1 -all"]]);
  });
});

/**
 * A server that first answers with forgeries, then truly: the same id for another name, the
 * right answer from another port, and the right answer from the server's port on another
 * address (an off-path attacker's guesses: sending from port 53 of a host of one's own needs no
 * spoofed source address, which egress filters stop), and, when `dropFirst`, no reply at all to
 * the first query (a lost packet).
 */
async function forgingServer(dropFirst: boolean): Promise<{ port: number; queries: number; close: () => void }> {
  const { createSocket } = await import("node:dgram");
  const socket = createSocket("udp4");
  const other = createSocket("udp4");
  const elsewhere = createSocket("udp4");
  await new Promise<void>((resolve) => other.bind(0, "127.0.0.1", () => resolve()));
  let closed = false;
  const state = { port: 0, queries: 0, close: () => ((closed = true), socket.close(), other.close(), elsewhere.close()) };
  const answer = (query: Buffer, text: string, question = query.subarray(12)): Buffer => {
    const head = Buffer.alloc(12);
    query.copy(head, 0, 0, 2);
    head.writeUInt16BE(0x8180, 2);
    head.writeUInt16BE(1, 4);
    head.writeUInt16BE(1, 6);
    const rdata = Buffer.concat([Buffer.from([text.length]), Buffer.from(text)]);
    const rr = Buffer.alloc(12);
    rr.writeUInt16BE(0xc00c, 0);
    rr.writeUInt16BE(16, 2);
    rr.writeUInt16BE(1, 4);
    rr.writeUInt32BE(60, 6);
    rr.writeUInt16BE(rdata.length, 10);
    return Buffer.concat([head, question, rr, rdata]);
  };
  socket.on("message", (query, from) => {
    state.queries++;
    if (dropFirst && state.queries === 1) return;
    const otherName = Buffer.from(query.subarray(12));
    otherName[1] = otherName[1] === 0x7a ? 0x79 : 0x7a; // first letter of the name changed
    socket.send(answer(query, "v=spf1 +all forged-name", otherName), from.port, from.address);
    other.send(answer(query, "v=spf1 +all forged-port"), from.port, from.address);
    elsewhere.send(answer(query, "v=spf1 +all forged-address"), from.port, from.address);
    setTimeout(() => closed || socket.send(answer(query, "v=spf1 -all"), from.port, from.address), 50);
  });
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", () => resolve()));
  state.port = (socket.address() as { port: number }).port;
  // The server's own port, on another loopback address.
  await new Promise<void>((resolve) => elsewhere.bind(state.port, "127.0.0.2", () => resolve()));
  return state;
}

describe("resolveTxt against forged and lost answers", () => {
  test("an answer for another name, from another port, or from another address is ignored; the true one is taken", async () => {
    const forger = await forgingServer(false);
    try {
      expect(await resolveTxt("short.example", { servers: [`127.0.0.1:${forger.port}`], tryTimeoutMs: 1000 })).toEqual([["v=spf1 -all"]]);
    } finally {
      forger.close();
    }
  });

  test("a server whose port refuses (ICMP) is skipped at once, not after the try's timeout", async () => {
    const { createSocket } = await import("node:dgram");
    const closed = createSocket("udp4");
    await new Promise<void>((resolve) => closed.bind(0, "127.0.0.1", () => resolve()));
    const port = (closed.address() as { port: number }).port;
    closed.close();
    const started = performance.now();
    expect(await resolveTxt("short.example", { servers: [`127.0.0.1:${port}`, at(server)], tryTimeoutMs: 2000 })).toEqual([["v=spf1 -all"]]);
    expect(performance.now() - started).toBeLessThan(1000);
  });

  test("a lost first query is asked again", async () => {
    const forger = await forgingServer(true);
    try {
      expect(await resolveTxt("short.example", { servers: [`127.0.0.1:${forger.port}`], tryTimeoutMs: 300 })).toEqual([["v=spf1 -all"]]);
      expect(forger.queries).toBe(2);
    } finally {
      forger.close();
    }
  });
});
