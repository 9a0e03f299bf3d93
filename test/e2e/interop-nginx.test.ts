/**
 * The real `mailgw serve` behind a real nginx `stream` proxy configured with the README's block
 * as written (ports changed, listening on loopback only), with the README's
 * SMTP_PROXY_PROTOCOL=true and SMTP_PROXY_TRUSTED=127.0.0.1/32. nginx sends PROXY v1.
 *
 * nginx reaches mailgw from 127.0.0.1; every client connects to nginx from another loopback
 * address, so the address mailgw uses is the one the header carried, never the proxy's:
 *   127.0.0.2  matched by a `client_ip in_cidr` rule     127.0.0.3  no rule (default)
 *   ::1        through `listen [::1]` (TCP6 header)      127.0.0.4  swaks STARTTLS
 *   127.0.0.5  10 MB over STARTTLS                       127.0.0.6/7 rate limit (2 each)
 *   127.0.0.20 outside SMTP_ALLOWED_IPS (127.0.0.0/28, ::1), while the proxy's 127.0.0.1 is inside
 * Connections that bypass nginx are refused with 421 and store nothing (SPEC §2).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { bigMessageOverTls, mailFrom, messageCount, messageRow, queuedId, SWAKS, SWAKS_TLS, swaks, viaProxy } from "../helpers/proxied-mail.ts";
import { loopbackSkipReason, nginxSkipReason, pickPorts, readmeBlockFor, startNginx, type RunningProxy } from "../helpers/real-proxies.ts";
import { RawClient, greet, makeCert, sendMail } from "../smtp/helpers.ts";
import { archivedCopy, RULES_YAML, serveDir, startServe, until, type ServeProcess } from "../smtp/serve-process.ts";

const SKIP = nginxSkipReason() ?? (await loopbackSkipReason());
if (SKIP) console.warn(`skip: nginx interop tests: ${SKIP}`);
if (!SKIP && !SWAKS_TLS) console.warn("skip (swaks leg of the nginx STARTTLS test): swaks with Net::SSLeay not installed (apt-get install -y swaks libnet-ssleay-perl)");

const RULES = `${RULES_YAML}  - { name: client-two, priority: 50, category: client-two, action: archive, conditions: [{ field: client_ip, operator: in_cidr, value: 127.0.0.2/32 }] }
  - { name: client-v6, priority: 40, category: client-v6, action: archive, conditions: [{ field: client_ip, operator: in_cidr, value: "::1/128" }] }
`;

let serve: ServeProcess;
let nginx: RunningProxy;
let port = 0;

beforeAll(async () => {
  if (SKIP) return;
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), RULES);
  const { key, cert } = makeCert(dir);
  serve = await startServe("source", dir, {
    SMTP_PROXY_PROTOCOL: "true",
    SMTP_PROXY_TRUSTED: "127.0.0.1/32",
    SMTP_ALLOWED_IPS: "127.0.0.0/28,::1/128",
    RATE_LIMIT_MAX: "2",
    SMTP_TLS_KEY: key,
    SMTP_TLS_CERT: cert,
  });
  [port = 0] = await pickPorts(1);
  nginx = await startNginx(readmeBlockFor(port, serve.smtpPort), port);
}, 30_000);

afterAll(async () => {
  await nginx?.stop();
  if (serve?.proc.exitCode === null) expect(await serve.stop()).toBe(0);
}, 60_000);

const session = (id: string) => serve.waitForLog((l) => l.msg === "smtp session" && l.id === id);

describe.skipIf(SKIP !== null)("nginx stream (README block) in front of mailgw serve", () => {
  test("the carried IPv4 address is the client in the session log, the row, the Received header and client_ip rules", async () => {
    const two = queuedId(await mailFrom(port, "127.0.0.2"));
    const three = queuedId(await mailFrom(port, "127.0.0.3"));
    expect(await session(two)).toMatchObject({ client: "127.0.0.2", helo: "client-127-0-0-2.example", rule: "client-two", category: "client-two" });
    expect(await session(three)).toMatchObject({ client: "127.0.0.3", category: "default" });
    expect(messageRow(serve.dir, two)).toMatchObject({ client_ip: "127.0.0.2", rule: "client-two", category: "client-two" });
    expect(messageRow(serve.dir, three)).toMatchObject({ client_ip: "127.0.0.3", rule: null, category: "default" });
    let copy: Buffer | null = null;
    await until(`${two} archived`, async () => (copy = await archivedCopy(serve.dir, two)) !== null, 5000);
    const received = String(copy).split("\r\n")[0];
    expect(received).toBe("Received: from client-127-0-0-2.example ([127.0.0.2])");
    // Nothing was attributed to the proxy's own address.
    expect(serve.logs.filter((l) => l.msg === "smtp session" && l.client === "127.0.0.1")).toEqual([]);
  });

  test("an IPv6 client (listen [::1]) arrives as ::1 from a TCP6 header", async () => {
    const id = queuedId(await mailFrom(port, "::1"));
    expect(await session(id)).toMatchObject({ client: "::1", rule: "client-v6" });
    expect(messageRow(serve.dir, id)).toMatchObject({ client_ip: "::1", category: "client-v6" });
  });

  test("STARTTLS through nginx (swaks, and a 10 MB message that arrives whole)", async () => {
    if (SWAKS_TLS) {
      const r = await swaks(port, "127.0.0.4", true);
      expect({ code: r.code, tls: r.out.includes("TLS started"), queued: /250 2\.0\.0 Queued as/.test(r.out) }).toEqual({ code: 0, tls: true, queued: true });
      const line = await serve.waitForLog((l) => l.msg === "smtp session" && l.client === "127.0.0.4");
      expect(line).toMatchObject({ tls: true, decision: "archive" });
    }
    const id = await bigMessageOverTls(port, "127.0.0.5", serve.dir);
    expect(await session(id)).toMatchObject({ client: "127.0.0.5", tls: true });
    expect(messageRow(serve.dir, id)).toMatchObject({ client_ip: "127.0.0.5", tls: 1 });
  }, 60_000);

  test("SMTP_ALLOWED_IPS and the rate limit apply to the carried address, not to the proxy's", async () => {
    const outside = await viaProxy(port, "127.0.0.20");
    expect(await outside.reply()).toMatch(/^554 5\.7\.1 /);
    outside.end();
    await serve.waitForLog((l) => l.msg === "smtp session" && l.client === "127.0.0.20" && String(l.reply).startsWith("554 5.7.1"));
    // The proxy's own address is allowed: a client on it gets the banner.
    const own = await viaProxy(port, "127.0.0.1");
    expect(await greet(own)).toStartWith("250");
    own.end();

    for (const source of ["127.0.0.6", "127.0.0.7"]) {
      const c = await viaProxy(port, source);
      await greet(c);
      const replies = [await sendMail(c), await sendMail(c), await c.cmd("MAIL FROM:<a@sender.example>")];
      c.end();
      expect({ source, replies: replies.map((r) => r.slice(0, 9)) }).toEqual({ source, replies: ["250 2.0.0", "250 2.0.0", "451 4.7.1"] });
    }
  });

  test("bypassing nginx: an untrusted source, and the trusted one without a header, get 421 and store nothing", async () => {
    const before = messageCount(serve.dir);
    const untrusted = await RawClient.connect(serve.smtpPort, "127.0.0.1", undefined, "127.0.0.2");
    expect(await untrusted.reply()).toMatch(/^421 4\.7\.0 .*trusted proxies/);
    expect(await untrusted.waitClose()).toBe(true);
    // A mail server that speaks first, and one that waits for a banner (refused after 5 s).
    const speaking = await RawClient.connect(serve.smtpPort, "127.0.0.1", "EHLO direct.example\r\n");
    const waiting = await RawClient.connect(serve.smtpPort, "127.0.0.1");
    const [spoke, waited] = await Promise.all([speaking.reply(), waiting.reply(8000)]);
    expect(spoke).toMatch(/^421 4\.7\.0 .*PROXY/);
    expect(waited).toMatch(/^421 4\.7\.0 .*PROXY/);
    expect(messageCount(serve.dir)).toBe(before);
    const refusals = serve.logs.filter((l) => l.msg === "smtp session" && String(l.reply).startsWith("421 4.7.0"));
    expect(refusals.map((l) => l.client).sort()).toEqual(["127.0.0.1", "127.0.0.1", "127.0.0.2"]);
  }, 20_000);

  test("nginx logged no warning or error, and mailgw none beyond the expected PROXY refusals", () => {
    expect({ stderr: nginx.output(), log: nginx.problems() }).toEqual({ stderr: "", log: [] });
    const loud = serve.logs.filter((l) => (l.level === "warn" || l.level === "error") && !String(l.msg).startsWith("no relay configured"));
    expect(loud.map((l) => `${l.level} ${l.msg} ${l.reason ?? ""}`.trim())).toEqual([
      "warn PROXY header refused not a PROXY header",
      "warn PROXY header refused PROXY header timeout",
    ]);
  });
});
