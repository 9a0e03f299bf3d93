/**
 * `serve` delivers from its delivery thread, both from source (`bun src/main.ts serve`) and as
 * the compiled dist/mailgw (copied outside the repository, repo hidden when the system allows
 * it, so the thread must come from the executable's embedded files — scripts/build.ts
 * WORKER_ENTRYPOINTS): a message matched by a `forward` rule reaches a real smtp-server relay
 * on loopback (RELAY_SMTP_SECURE=none) byte for byte, the log says the deliveries ran in their
 * own thread (not the main-thread fallback) with a "delivered" line carrying the message id,
 * and SIGTERM stops serve with exit 0.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import nodemailer from "nodemailer";
import { startCapture } from "../helpers/interop.ts";
import { BARE_PATH, copyBinaryToTemp, hideRepoWrapper, REPO_ROOT, type CopiedBinary, freePort } from "../packaging/binary.ts";

/** How long the gateway may take to open its ports. */
const STARTUP_TIMEOUT_MS = 20_000;

let binary: CopiedBinary;
const dirs: string[] = [];

beforeAll(() => {
  binary = copyBinaryToTemp();
}, 60_000);
afterAll(() => {
  binary?.cleanup();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}, 60_000);

const RULES = [
  "domains: [example.test]",
  "default: { action: archive, category: default }",
  "rules:",
  "  - { name: fwd, action: forward, category: forwarded, forward_to: [ops@elsewhere.test], conditions: [{ field: size, operator: gt, value: 0 }] }",
  "",
].join("\n");

async function healthy(httpPort: number): Promise<boolean> {
  try {
    return (await fetch(`http://127.0.0.1:${httpPort}/healthz`)).ok;
  } catch {
    return false;
  }
}

async function runServeAndForward(command: string[]): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "mailgw-delivery-thread-"));
  dirs.push(work);
  writeFileSync(join(work, "rules.yaml"), RULES);
  const relay = await startCapture(0); // a plain relay (no TLS, no AUTH) that records what it receives
  const [smtpPort, httpPort] = [await freePort(), await freePort()];
  const env = {
    SMTP_HOST: "127.0.0.1", SMTP_PORT: String(smtpPort), HTTP_HOST: "127.0.0.1", HTTP_PORT: String(httpPort),
    SMTP_HOSTNAME: "mx.example.test", LOG_FORMAT: "json", LOG_LEVEL: "info",
    RELAY_SMTP_HOST: "127.0.0.1", RELAY_SMTP_PORT: String(relay.port), RELAY_SMTP_SECURE: "none",
  };
  const serve = Bun.spawn(command, { cwd: work, env: { PATH: BARE_PATH, HOME: work, ...env }, stdout: "pipe", stderr: "pipe" });
  const output = Promise.all([new Response(serve.stdout).text(), new Response(serve.stderr).text()]);
  const raw = "From: sender@origin.example\r\nTo: user@example.test\r\nSubject: forward me\r\n\r\nbody line\r\n";
  let id = "";
  try {
    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    for (;;) {
      if (serve.exitCode !== null) throw new Error(`serve exited early with ${serve.exitCode}: ${(await output).join("\n")}`);
      if (await healthy(httpPort)) break;
      if (Date.now() > deadline) throw new Error("serve did not become healthy in time");
      await Bun.sleep(200);
    }
    const transport = nodemailer.createTransport({ host: "127.0.0.1", port: smtpPort, secure: false, ignoreTLS: true });
    const info = await transport.sendMail({ envelope: { from: "sender@origin.example", to: ["user@example.test"] }, raw });
    transport.close();
    id = /Queued as (\S+)/.exec(info.response)?.[1] ?? "";
    const until = Date.now() + 15_000;
    while (relay.captured.length === 0 && Date.now() < until) await Bun.sleep(50);
  } finally {
    serve.kill("SIGTERM");
    await relay.close();
  }
  expect(await serve.exited).toBe(0);
  const log = (await output).join("\n");
  expect(id).not.toBe("");
  expect(relay.captured).toHaveLength(1);
  expect(relay.captured[0]?.to).toEqual(["ops@elsewhere.test"]);
  expect(relay.captured[0]?.data.toString("latin1").endsWith(raw)).toBe(true);
  expect(log).toContain("deliveries run in their own thread");
  expect(log).not.toContain("delivery thread unavailable");
  const delivered = log.split("\n").find((line) => line.includes('"msg":"delivered"') && line.includes(id)) ?? "";
  expect(delivered).toContain('"rule":"fwd"');
}

test("compiled serve delivers from its delivery thread", async () => {
  await runServeAndForward([...(hideRepoWrapper() ?? []), binary.bin, "serve"]);
}, 90_000);

test("serve from source delivers from its delivery thread", async () => {
  const main = join(REPO_ROOT, "src/main.ts");
  await runServeAndForward([process.execPath, main, "serve"]);
}, 90_000);
