/**
 * IPv6 as an admin on a dual-stack or IPv6-only host sees it, against the compiled dist/mailgw:
 * - SMTP on ::1 and a relay at an IPv6 literal (a real smtp-server on ::1): the start line, the
 *   delivery log and /stats.json write each address with its port as `[::1]:PORT`, never as
 *   `::1:PORT` (itself a valid IPv6 address, so the port could not be told from it);
 * - an IPv6 zone id in SMTP_ALLOWED_IPS or SMTP_PROXY_TRUSTED (`fe80::%eth0/10`) is refused at
 *   start: the check compares addresses only, and the interface was silently dropped, so any
 *   interface matched;
 * - RATE_LIMIT_MAX counts an IPv6 client by its /64 (README: one host usually owns a whole /64),
 *   here through a PROXY v1 TCP6 header from a proxy on ::1 trusted as ::1/128; a client in the
 *   well-known NAT64 prefix by the IPv4 address it carries.
 */
import { afterAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { SMTPServer } from "smtp-server";
import { RawClient, greet, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { cleanupBinary, runServeOnce, serveDir, startServe } from "../smtp/serve-process.ts";

const FORWARD_RULES = `domains: [company.com]
default: { action: forward, category: default, forward_to: [ops@forward.example] }
rules: []
`;

const dirs: string[] = [];
afterAll(() => {
  cleanupBinary();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}, 60_000);

/** A plain-SMTP relay on ::1; resolves with its port and the recipients of what it took. */
async function ipv6Relay(): Promise<{ port: number; received: string[]; close(): Promise<void> }> {
  const received: string[] = [];
  const relay = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    logger: false,
    onData(stream, session, cb) {
      stream.resume();
      stream.on("end", () => {
        received.push(`${session.remoteAddress}:${session.envelope.rcptTo.map((r) => r.address).join(",")}`);
        cb();
      });
    },
  });
  relay.on("error", () => undefined);
  await new Promise<void>((resolve) => relay.listen(0, "::1", () => resolve()));
  const address = relay.server.address();
  return {
    port: typeof address === "object" && address ? address.port : 0,
    received,
    close: () => new Promise<void>((resolve) => relay.close(() => resolve())),
  };
}

test("SMTP on ::1, relay at ::1: the start line, the delivery log and /stats.json write [::1]:PORT (binary)", async () => {
  const dir = serveDir();
  dirs.push(dir);
  await Bun.write(`${dir}/rules.yaml`, FORWARD_RULES);
  const relay = await ipv6Relay();
  const serve = await startServe("binary", dir, { SMTP_HOST: "::1", RELAY_SMTP_HOST: "::1", RELAY_SMTP_PORT: String(relay.port), RELAY_SMTP_SECURE: "none" });
  try {
    const started = await serve.waitForLog((l) => l.msg === "mailgw serve started");
    expect(started.smtp).toBe(`[::1]:${serve.smtpPort}`);
    expect(started.relay).toBe(`[::1]:${relay.port} (none)`);

    const c = await RawClient.connect(serve.smtpPort, "::1");
    await greet(c);
    const reply = await sendMail(c, "b@company.com", simpleMessage("over ipv6"));
    c.end();
    const id = reply.split(" ").pop() ?? "";
    const delivered = await serve.waitForLog((l) => l.msg === "delivered" && l.id === id, 15_000);
    expect(delivered.target).toBe(`[::1]:${relay.port} → ops@forward.example`);
    expect(relay.received).toEqual(["::1:ops@forward.example"]);

    const stats = (await (await fetch(`${serve.httpUrl}stats.json`)).json()) as { relay: { address: string } };
    expect(stats.relay.address).toBe(`[::1]:${relay.port}`);
  } finally {
    await serve.stop("SIGTERM");
    await relay.close();
  }
}, 90_000);

test("SMTP_HOST=localhost and HTTP_HOST=localhost listen on 127.0.0.1, whatever /etc/hosts lists first (binary)", async () => {
  const dir = serveDir();
  dirs.push(dir);
  const serve = await startServe("binary", dir, { SMTP_HOST: "localhost", HTTP_HOST: "localhost" });
  try {
    const started = await serve.waitForLog((l) => l.msg === "mailgw serve started");
    expect(started.smtp).toBe(`127.0.0.1:${serve.smtpPort}`);
    const c = await RawClient.connect(serve.smtpPort, "127.0.0.1");
    await greet(c);
    expect(await sendMail(c, "b@company.com", simpleMessage("over localhost"))).toMatch(/^250 2\.0\.0 Queued as /);
    c.end();
    expect(new URL(serve.httpUrl).hostname).toBe("127.0.0.1");
    expect((await fetch(`${serve.httpUrl}healthz`)).status).toBe(200);
  } finally {
    await serve.stop("SIGTERM");
  }
}, 60_000);

test("a zone id in SMTP_ALLOWED_IPS or SMTP_PROXY_TRUSTED is refused at start, naming the variable and the fix (binary)", async () => {
  const dir = serveDir();
  dirs.push(dir);
  for (const [name, value, fix] of [
    ["SMTP_ALLOWED_IPS", "fe80::%eth0/10", "fe80::/10"],
    ["SMTP_ALLOWED_IPS", "192.0.2.0/24,fe80::1%eth0", "fe80::1"],
    ["SMTP_PROXY_TRUSTED", "fe80::/64%lo", "fe80::/64"],
  ] as const) {
    const run = await runServeOnce("binary", dir, { SMTP_HOST: "127.0.0.1", HTTP_HOST: "127.0.0.1", [name]: value });
    expect(run.exitCode).toBe(1);
    const item = value.split(",").pop() ?? "";
    expect(run.stderr).toBe(`mailgw: ${name}: "${item}" names an interface (zone id): client addresses are matched without their interface; write ${fix}\n`);
  }
}, 60_000);

test("the message rate limit counts an IPv6 client's /64, behind a proxy on ::1 (binary)", async () => {
  const dir = serveDir();
  dirs.push(dir);
  const serve = await startServe("binary", dir, { SMTP_HOST: "::1", SMTP_PROXY_PROTOCOL: "true", SMTP_PROXY_TRUSTED: "::1/128", RATE_LIMIT_MAX: "1" });
  const mailFrom = async (client: string): Promise<string> => {
    const c = await RawClient.connect(serve.smtpPort, "::1", `PROXY TCP6 ${client} 2001:db8:ffff::25 51000 25\r\n`);
    try {
      await greet(c);
      return await sendMail(c);
    } finally {
      c.end();
    }
  };
  try {
    expect(await mailFrom("2001:db8:1:2::1")).toMatch(/^250 2\.0\.0 Queued as /);
    // Another address of the same /64: the same client.
    expect(await mailFrom("2001:db8:1:2:ffff::7")).toBe("451 4.7.1 Too many messages from your address, try again later");
    expect(await mailFrom("2001:db8:1:3::1")).toMatch(/^250 2\.0\.0 Queued as /);
    // Through a NAT64 translator (64:ff9b::/96): each IPv4 sender it carries is a client of its own.
    expect(await mailFrom("64:ff9b::c000:201")).toMatch(/^250 2\.0\.0 Queued as /);
    expect(await mailFrom("64:ff9b::192.0.2.2")).toMatch(/^250 2\.0\.0 Queued as /);
    expect(await mailFrom("64:ff9b::c000:201")).toBe("451 4.7.1 Too many messages from your address, try again later");
  } finally {
    await serve.stop("SIGTERM");
  }
}, 60_000);
