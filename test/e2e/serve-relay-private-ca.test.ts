/**
 * A smarthost whose certificate comes from a company's private CA, with RELAY_SMTP_TLS_VERIFY=true
 * (the default), against the compiled dist/mailgw: the forward is deferred (as Postfix's
 * `smtp_tls_security_level = secure` defers), and the error in `queue list` names the fix that
 * keeps verification on (NODE_EXTRA_CA_CERTS), not only turning it off; after a restart with
 * NODE_EXTRA_CA_CERTS pointing at the CA, `queue retry` delivers it. The relay is a real
 * smtp-server on loopback offering STARTTLS with that certificate.
 */
import { afterAll, expect, test } from "bun:test";
import { readFileSync, rmSync } from "node:fs";
import { SMTPServer } from "smtp-server";
import { makeCaSignedCert, RawClient, greet, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { cleanupBinary, mailgwQueue, queueList, serveDir, startServe, until } from "../smtp/serve-process.ts";

const RULES = `domains: [company.com]
default: { action: forward, category: default, forward_to: [ops@forward.example] }
rules: []
`;

const dirs: string[] = [];
afterAll(() => {
  cleanupBinary();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}, 60_000);

test("private-CA relay: deferred with the NODE_EXTRA_CA_CERTS fix named; delivered after a restart with it (binary)", async () => {
  const dir = serveDir();
  dirs.push(dir);
  await Bun.write(`${dir}/rules.yaml`, RULES);
  const certs = makeCaSignedCert(dir);
  const received: string[] = [];
  const relay = new SMTPServer({
    key: readFileSync(certs.key),
    cert: readFileSync(certs.cert),
    authOptional: true,
    logger: false,
    onData(stream, session, cb) {
      stream.resume();
      stream.on("end", () => {
        received.push(`${session.secure}:${session.envelope.rcptTo.map((r) => r.address).join(",")}`);
        cb();
      });
    },
  });
  relay.on("error", () => undefined);
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", () => resolve()));
  const address = relay.server.address();
  const relayPort = typeof address === "object" && address ? address.port : 0;
  const env = { RELAY_SMTP_HOST: "localhost", RELAY_SMTP_PORT: String(relayPort), RELAY_SMTP_SECURE: "starttls", QUEUE_RETRY_BASE_SECONDS: "3600" };

  let serve = await startServe("binary", dir, env);
  try {
    const c = await RawClient.connect(serve.smtpPort);
    await greet(c);
    const reply = await sendMail(c, "b@company.com", simpleMessage("private ca"));
    c.end();
    const id = reply.split(" ").pop() ?? "";
    const deferred = await serve.waitForLog((l) => l.msg === "deferred" && l.id === id, 15_000);
    expect(String(deferred.error)).toContain("NODE_EXTRA_CA_CERTS=");
    const [entry] = await queueList(dir);
    expect(entry).toMatchObject({ id, state: "deferred" });
    expect(entry?.lastError).toMatch(/^relay suspended: relay certificate refused \(not signed by a trusted CA\): .*NODE_EXTRA_CA_CERTS=.*unable to verify the first certificate/);
    // The table's shortened error column still shows the fix that keeps verification on.
    expect((await mailgwQueue(dir, "list")).stdout).toContain("NODE_EXTRA_CA_CERTS=<CA PEM file>");
    expect(received).toEqual([]);

    // README's fix: the CA in NODE_EXTRA_CA_CERTS (process environment) and a restart, which
    // tries the suspended relay at once (no `queue retry` needed, the backoff is an hour).
    expect(await serve.stop("SIGTERM")).toBe(0);
    serve = await startServe("binary", dir, { ...env, NODE_EXTRA_CA_CERTS: certs.ca });
    await serve.waitForLog((l) => l.msg === "delivered" && l.id === id, 15_000);
    await until("the relay got it", async () => received.length === 1);
    expect(received).toEqual(["true:ops@forward.example"]);
  } finally {
    await serve.stop("SIGTERM");
    await new Promise<void>((resolve) => relay.close(() => resolve()));
  }
}, 90_000);
