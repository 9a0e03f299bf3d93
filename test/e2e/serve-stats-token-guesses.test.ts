/**
 * Guessing STATS_TOKEN against a real `mailgw serve` (from source) over its HTTP socket: past
 * WRONG_TOKENS_PER_WINDOW wrong tokens, the guessing address gets 429 with Retry-After for every
 * guarded path, the right token included (else the answer would still tell a guess right from
 * wrong), and the log names it once; another address with the right token, a request without
 * credentials (a browser's first ask) and /healthz are answered as before. Before, thousands of
 * guesses a second were answered 401 and the log had nothing.
 */
import { describe, expect, test } from "bun:test";
import { connect } from "node:net";
import { WRONG_TOKENS_PER_WINDOW } from "../../src/http/wrong-tokens.ts";
import { serveEachTest } from "../smtp/serve-process.ts";

const TOKEN = "right-token-0123456789abcdef";
const serve = serveEachTest();

/** One GET over a socket of its own from `localAddress` (another loopback address is another client). */
function get(url: string, path: string, localAddress: string, authorization?: string): Promise<{ status: number; retryAfter: string | null }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port), localAddress });
    let reply = "";
    socket.on("error", reject);
    socket.on("data", (d) => (reply += d.toString("latin1")));
    socket.on("end", () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1] ?? 0);
      const retryAfter = /\r\nretry-after: *(\d+)/i.exec(reply)?.[1] ?? null;
      resolve({ status, retryAfter });
    });
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${authorization ? `Authorization: ${authorization}\r\n` : ""}\r\n`);
  });
}

describe("wrong STATS_TOKEN guesses", () => {
  test("lock the guessing address for the window; others, credential-less asks and /healthz are unaffected", async () => {
    const s = await serve({ STATS_TOKEN: TOKEN });
    const guesser = "127.0.0.1";
    for (let i = 0; i < WRONG_TOKENS_PER_WINDOW; i++) {
      expect((await get(s.httpUrl, "/metrics", guesser, `Bearer wrong-${i}`)).status).toBe(401);
    }
    for (const path of ["/metrics", "/stats", "/stats.json"]) {
      const locked = await get(s.httpUrl, path, guesser, `Bearer ${TOKEN}`);
      expect(locked.status).toBe(429);
      expect(Number(locked.retryAfter)).toBeGreaterThan(0);
      expect(Number(locked.retryAfter)).toBeLessThanOrEqual(60);
    }
    // Basic with the token as password counts the same way; still locked.
    expect((await get(s.httpUrl, "/stats", guesser, `Basic ${btoa(`admin:${TOKEN}`)}`)).status).toBe(429);
    expect((await get(s.httpUrl, "/healthz", guesser)).status).toBe(200);
    // Another client: the right token works, a missing one is the usual 401, and asks without
    // credentials are no guesses (a browser's first request before its login prompt).
    expect((await get(s.httpUrl, "/metrics", "127.0.0.2", `Bearer ${TOKEN}`)).status).toBe(200);
    for (let i = 0; i < WRONG_TOKENS_PER_WINDOW + 5; i++) expect((await get(s.httpUrl, "/stats", "127.0.0.3")).status).toBe(401);
    expect((await get(s.httpUrl, "/stats", "127.0.0.3", `Bearer ${TOKEN}`)).status).toBe(200);
    const line = await s.waitForLog((l) => typeof l.msg === "string" && l.msg.startsWith("stats: too many wrong STATS_TOKEN guesses"));
    expect(line).toMatchObject({ level: "warn", client: guesser, wrong_tokens: WRONG_TOKENS_PER_WINDOW });
    expect(s.logs.filter((l) => l.msg === line.msg)).toHaveLength(1);
  }, 60_000);

  test("without STATS_TOKEN nothing is counted or locked", async () => {
    const s = await serve({});
    for (let i = 0; i < WRONG_TOKENS_PER_WINDOW + 5; i++) expect((await get(s.httpUrl, "/metrics", "127.0.0.1", `Bearer wrong-${i}`)).status).toBe(200);
  }, 60_000);
});
