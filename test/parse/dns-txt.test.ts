/**
 * resolveTxt() against a real DNS server on loopback (UDP and TCP): a record of several
 * character-strings stays one record (Bun's node:dns splits it: oven-sh/bun#21370), a
 * truncated UDP answer is asked again over TCP, and NXDOMAIN, NODATA, SERVFAIL and silence
 * give node:dns's error codes, the next server being asked when one fails.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { resolveTxt } from "../../src/parse/dns-txt.ts";
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
});
afterAll(async () => {
  await Promise.all([server?.close(), silent?.close(), failing?.close()]);
});

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
});
