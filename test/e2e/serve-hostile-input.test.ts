/**
 * Hostile input against the real `mailgw serve` (from source), as a sender or a client of the
 * stats server would send it:
 * - a Host header that is no host name (`[evil.example]`, `%`) is the client's mistake: 400, and
 *   no ERROR line in the log per request (it used to be a 500 logged as "http server error");
 */
import { afterEach, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { RULES_YAML, serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";

const running: ServeProcess[] = [];
afterEach(async () => {
  for (const s of running.splice(0)) if (s.proc.exitCode === null) await s.stop("SIGKILL");
});

async function serve(env: Record<string, string> = {}, rules = RULES_YAML): Promise<ServeProcess> {
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), rules);
  const s = await startServe("source", dir, env);
  running.push(s);
  return s;
}

/** Status line of one raw HTTP/1.1 GET with the given Host header (fetch would set its own). */
function statusWithHost(url: string, path: string, host: string): Promise<number> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    let text = "";
    const conn = createConnection({ host: "127.0.0.1", port: Number(port) }, () => conn.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
    conn.on("data", (d) => (text += d.toString()));
    conn.on("end", () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
    conn.on("error", reject);
  });
}

describe("mailgw serve against hostile input", () => {
  test("a Host header that is no host name gets 400, not a 500 with an ERROR log line", async () => {
    const s = await serve();
    for (const host of ["[evil.example]", "%", "[::1"]) {
      expect(await statusWithHost(s.httpUrl, "/healthz", host)).toBe(400);
      expect(await statusWithHost(s.httpUrl, "/stats", host)).toBe(400);
    }
    // The server goes on answering well-formed requests.
    expect(await statusWithHost(s.httpUrl, "/healthz", "localhost")).toBe(200);
    expect(s.logs.filter((l) => l.level === "error")).toEqual([]);
    expect(await s.stop()).toBe(0);
  }, 30_000);
});
