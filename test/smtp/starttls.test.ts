/**
 * STARTTLS in process (Bun): handshake, pipelined plaintext after STARTTLS discarded (whole
 * and partial lines), SMTP_TLS_REQUIRED, certificate reload (SIGHUP path and file change)
 * without dropping a session already under TLS, unusable files at start → CliError naming
 * the file. A real client (nodemailer) sends over STARTTLS too. A TLS session that ended holds
 * no timer (and so no memory) afterwards.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { heapStats } from "bun:jsc";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import nodemailer from "nodemailer";
import { CliError } from "../../src/errors.ts";
import { RawClient, greet, makeCert, makeExpiredCert, sendMail, startTestServer, tempDir, type TestServer } from "./helpers.ts";

let server: TestServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
}, 60_000);

function tlsEnv(dir: string, extra: Record<string, string> = {}): Record<string, string> {
  const { key, cert } = makeCert(dir);
  return { SMTP_TLS_KEY: key, SMTP_TLS_CERT: cert, ...extra };
}

async function startTls(c: RawClient): Promise<void> {
  expect(await c.cmd("STARTTLS")).toMatch(/^220 /);
  await c.upgrade();
}

function fingerprint(c: RawClient): string {
  return (c.socket as TLSSocket).getPeerCertificate().fingerprint256;
}

describe("STARTTLS", () => {
  test("handshake, then EHLO again, message marked tls and Received says ESMTPS", async () => {
    const dir = tempDir();
    server = await startTestServer({ env: tlsEnv(dir) });
    const c = await RawClient.connect(server.port);
    expect(await greet(c)).toContain("STARTTLS");
    await startTls(c);
    const ehlo = await c.cmd("EHLO client.example");
    expect(ehlo).not.toContain("STARTTLS");
    expect(ehlo).not.toContain("AUTH");
    // smtp-server offers REQUIRETLS after the handshake; its promise (TLS on every later hop)
    // is not one a relay with RELAY_SMTP_SECURE=none could keep.
    expect(ehlo).not.toContain("REQUIRETLS");
    expect(await c.cmd("MAIL FROM:<a@sender.example> REQUIRETLS")).toStartWith("555 5.5.4");
    await c.cmd("RSET");
    expect(await sendMail(c)).toStartWith("250 2.0.0");
    const m = server.sink.messages[0];
    expect(m?.envelope.tls).toBe(true);
    expect(m?.raw.toString("latin1")).toMatch(/with ESMTPS\r\n\t\(version=TLSv1\.[23] cipher=/);
    await c.cmd("QUIT");
    // The session is recorded when its connection has closed, after the 221.
    const deadline = Date.now() + 3000;
    while (server.sessions.length === 0 && Date.now() < deadline) await Bun.sleep(20);
    expect(server.sessions.some((s) => s.tls)).toBe(true);
  });

  test("STARTTLS\\r\\nRSET\\r\\n in one segment: the RSET is discarded, no plaintext reply", async () => {
    server = await startTestServer({ env: tlsEnv(tempDir()) });
    const c = await RawClient.connect(server.port);
    await greet(c);
    c.write("STARTTLS\r\nRSET\r\n");
    expect(await c.reply()).toMatch(/^220 /);
    await c.upgrade();
    // Had the RSET been executed, its "250 Flushed" would now be read as the NOOP reply.
    expect(await c.cmd("NOOP")).toMatch(/^250 2\.0\.0 OK/);
    expect(await c.cmd("MAIL FROM:<a@sender.example>")).toMatch(/^503 /); // EHLO needed again
    await c.cmd("EHLO again.example");
    expect(await sendMail(c)).toStartWith("250");
  });

  test("partial line STARTTLS\\r\\nRSE before the handshake does not prefix the first encrypted command", async () => {
    server = await startTestServer({ env: tlsEnv(tempDir()) });
    const c = await RawClient.connect(server.port);
    await greet(c);
    c.write("STARTTLS\r\nRSE");
    expect(await c.reply()).toMatch(/^220 /);
    await c.upgrade();
    // "RSE" + "T\r\n" would make "RSET"; the server must see only "T".
    expect(await c.cmd("T")).toMatch(/^500 /);
    expect(await c.cmd("EHLO again.example")).toStartWith("250");
  });

  test("a failed STARTTLS handshake is in the session's log line (like Postfix's SSL_accept error)", async () => {
    server = await startTestServer({ env: tlsEnv(tempDir()) });
    const c = await RawClient.connect(server.port);
    await greet(c);
    expect(await c.cmd("STARTTLS")).toMatch(/^220 /);
    // Plaintext where the ClientHello should be: the handshake fails and the connection closes.
    c.socket.write("EHLO still.plaintext.example\r\n");
    const deadline = Date.now() + 3000;
    while (server.sessions.length === 0 && Date.now() < deadline) await Bun.sleep(20);
    expect(server.sessions).toHaveLength(1);
    expect(server.sessions[0]?.error).toStartWith("TLS handshake failed: ");
    expect(server.sessions[0]?.tls).toBe(false);
    const line = server.logs.lines.find((l) => l.msg === "smtp session");
    expect(String(line?.fields.error)).toStartWith("TLS handshake failed: ");
    // A session without trouble has no error field.
    const ok = await RawClient.connect(server.port);
    await greet(ok);
    await ok.cmd("QUIT");
    while (server.sessions.length < 2 && Date.now() < deadline) await Bun.sleep(20);
    expect(server.sessions[1]?.error).toBeNull();
  });

  test("a client that stalls in the STARTTLS handshake is timed out, frees its slot and gets its log line", async () => {
    server = await startTestServer({ env: tlsEnv(tempDir()), limits: { idleTimeoutMs: 500 } });
    const stall = async (partialHello: boolean): Promise<RawClient> => {
      const c = await RawClient.connect(server!.port);
      await greet(c);
      expect(await c.cmd("STARTTLS")).toMatch(/^220 /);
      // The first bytes of a TLS record header, and then nothing (a ClientHello cut short).
      if (partialHello) c.write(Buffer.from("160301020001", "hex"));
      return c;
    };
    const clients = [await stall(false), await stall(true)];
    for (const c of clients) expect(await c.waitClose(5000)).toBe(true);
    const deadline = Date.now() + 3000;
    while (server.sessions.length < 2 && Date.now() < deadline) await Bun.sleep(20);
    expect(server.handle.sessionCount()).toBe(0);
    expect(server.sessions.map((s) => ({ tls: s.tls, error: s.error }))).toEqual([
      { tls: false, error: "TLS handshake failed: timed out" },
      { tls: false, error: "TLS handshake failed: timed out" },
    ]);
    expect(server.logs.lines.filter((l) => l.msg === "smtp session")).toHaveLength(2);
  });

  test("SMTP_TLS_REQUIRED: MAIL before STARTTLS → 530 5.7.0, after STARTTLS accepted", async () => {
    server = await startTestServer({ env: tlsEnv(tempDir(), { SMTP_TLS_REQUIRED: "true" }) });
    const c = await RawClient.connect(server.port);
    await greet(c);
    expect(await c.cmd("MAIL FROM:<a@sender.example>")).toBe("530 5.7.0 Must issue a STARTTLS command first");
    await startTls(c);
    await c.cmd("EHLO client.example");
    expect(await sendMail(c)).toStartWith("250");
  });

  test("SMTP_TLS_REQUIRED: only EHLO, HELO, STARTTLS, NOOP and QUIT before STARTTLS (RFC 3207 §4)", async () => {
    server = await startTestServer({ env: tlsEnv(tempDir(), { SMTP_TLS_REQUIRED: "true" }) });
    const c = await RawClient.connect(server.port);
    await greet(c);
    const refused = "530 5.7.0 Must issue a STARTTLS command first";
    for (const command of ["RSET", "VRFY postmaster", "HELP", "RCPT TO:<x@company.com>", "DATA", "EXPN staff"]) {
      expect([command, await c.cmd(command)]).toEqual([command, refused]);
    }
    expect(await c.cmd("NOOP")).toStartWith("250");
    expect(await c.cmd("HELO client.example")).toStartWith("250");
    // A verb nobody knows is "not recognized", as from Postfix, not a TLS matter.
    expect(await c.cmd("FOO bar")).toMatch(/^5\d\d /);
    expect(await c.cmd("FOO bar")).not.toBe(refused);
    await c.cmd("EHLO client.example");
    await startTls(c);
    await c.cmd("EHLO client.example");
    expect(await c.cmd("RSET")).toStartWith("250");
    expect(await c.cmd("VRFY postmaster")).toStartWith("252");
    expect(await sendMail(c)).toStartWith("250 2.0.0");
    await c.cmd("QUIT");
  });

  test("SMTP_TLS_REQUIRED off: RSET and VRFY answered in plain text as before", async () => {
    server = await startTestServer({ env: tlsEnv(tempDir()) });
    const c = await RawClient.connect(server.port);
    await greet(c);
    expect(await c.cmd("RSET")).toStartWith("250");
    expect(await c.cmd("VRFY postmaster")).toStartWith("252");
    expect(await sendMail(c)).toStartWith("250 2.0.0");
  });

  test("certificate reload (SIGHUP path and file change) keeps open TLS sessions", async () => {
    const dir = tempDir();
    const live = join(dir, "live");
    const { key, cert } = makeCert(dir, "one");
    const two = makeCert(dir, "two");
    mkdirSync(live);
    copyFileSync(key, join(live, "key.pem"));
    copyFileSync(cert, join(live, "cert.pem"));
    server = await startTestServer({ env: { SMTP_TLS_KEY: join(live, "key.pem"), SMTP_TLS_CERT: join(live, "cert.pem") } });
    const old = await RawClient.connect(server.port);
    await greet(old);
    await startTls(old);
    const before = fingerprint(old);

    copyFileSync(two.key, join(live, "key.pem"));
    copyFileSync(two.cert, join(live, "cert.pem"));
    expect(server.handle.reloadTls()).toBe(true);
    const fresh = await RawClient.connect(server.port);
    await greet(fresh);
    await startTls(fresh);
    expect(fingerprint(fresh)).not.toBe(before);
    await old.cmd("EHLO still.example");
    expect(await sendMail(old)).toStartWith("250");

    // File change without SIGHUP: the watcher picks it up (debounced).
    copyFileSync(key, join(live, "key.pem"));
    copyFileSync(cert, join(live, "cert.pem"));
    let back = "";
    for (let i = 0; i < 40 && back !== before; i++) {
      await Bun.sleep(100);
      const probe = await RawClient.connect(server.port);
      await greet(probe);
      await startTls(probe);
      back = fingerprint(probe);
      probe.end();
    }
    expect(back).toBe(before);

    // A broken renewal is refused; the current certificate stays.
    writeFileSync(join(live, "cert.pem"), "-----BEGIN CERTIFICATE-----\ngarbage\n");
    expect(server.handle.reloadTls()).toBe(false);
    expect(server.logs.lines.some((l) => l.level === "error" && l.msg.includes("TLS certificate reload failed"))).toBe(true);
  });

  test("an expired certificate: refused on reload while the one in force is valid; served with a warning at start", async () => {
    const dir = tempDir();
    const live = join(dir, "live");
    mkdirSync(live);
    const good = makeCert(dir, "good");
    const expired = makeExpiredCert(dir);
    copyFileSync(good.key, join(live, "key.pem"));
    copyFileSync(good.cert, join(live, "cert.pem"));
    server = await startTestServer({ env: { SMTP_TLS_KEY: join(live, "key.pem"), SMTP_TLS_CERT: join(live, "cert.pem") } });
    const probe = async (): Promise<string> => {
      const c = await RawClient.connect(server!.port);
      await greet(c);
      await startTls(c);
      const f = fingerprint(c);
      c.end();
      return f;
    };
    const before = await probe();
    copyFileSync(expired.key, join(live, "key.pem"));
    copyFileSync(expired.cert, join(live, "cert.pem"));
    expect(server.handle.reloadTls()).toBe(false);
    expect(await probe()).toBe(before);
    const refusal = server.logs.lines.find((l) => l.level === "error" && l.msg.startsWith("TLS certificate reload failed"));
    expect(String(refusal?.fields.error)).toContain("expired on 2020-01-02");
    // Put back: said to be fine again. A reload that swaps logs what is served now.
    copyFileSync(good.key, join(live, "key.pem"));
    copyFileSync(good.cert, join(live, "cert.pem"));
    expect(server.handle.reloadTls()).toBe(true);
    expect(server.logs.lines.map((l) => l.msg)).toContain("TLS certificate files valid again; the certificate in force is unchanged");
    const other = makeCert(dir, "other");
    copyFileSync(other.key, join(live, "key.pem"));
    copyFileSync(other.cert, join(live, "cert.pem"));
    expect(server.handle.reloadTls()).toBe(true);
    const reloaded = server.logs.lines.find((l) => l.msg === "TLS certificate reloaded");
    expect(reloaded?.fields).toMatchObject({ subject: "CN=localhost" });
    expect(String(reloaded?.fields.serial)).toMatch(/^[0-9A-F]+$/);
    await server.close();
    // At start an expired certificate is served (opportunistic TLS still works), with a warning.
    server = await startTestServer({ env: { SMTP_TLS_KEY: expired.key, SMTP_TLS_CERT: expired.cert } });
    expect(server.logs.lines.some((l) => l.level === "warn" && l.msg.includes("expired on 2020-01-02"))).toBe(true);
  });

  test("TLS enabled with a missing or unreadable file → CliError naming the variable and file", async () => {
    const dir = tempDir();
    const missing = join(dir, "nope.pem");
    const { cert } = makeCert(dir);
    const attempt = () => startTestServer({ env: { SMTP_TLS_ENABLED: "true", SMTP_TLS_KEY: missing, SMTP_TLS_CERT: cert } });
    await expect(attempt()).rejects.toThrow(CliError);
    await expect(attempt()).rejects.toThrow(`SMTP_TLS_KEY=${missing}`);
    const notPem = join(dir, "not.pem");
    writeFileSync(notPem, "hello");
    await expect(startTestServer({ env: { SMTP_TLS_KEY: notPem, SMTP_TLS_CERT: cert } })).rejects.toThrow(`SMTP_TLS_KEY=${notPem} is not a PEM file`);
  });

  test("nodemailer sends over STARTTLS (requireTLS)", async () => {
    server = await startTestServer({ env: tlsEnv(tempDir()) });
    const transport = nodemailer.createTransport({ host: "127.0.0.1", port: server.port, secure: false, requireTLS: true, tls: { rejectUnauthorized: false } });
    const info = await transport.sendMail({ from: "a@sender.example", to: "b@company.com", subject: "nm", text: "hello" });
    expect(info.response).toMatch(/^250 2\.0\.0 Queued as t1/);
    expect(server.sink.messages[0]?.envelope.tls).toBe(true);
    transport.close();
  });

  test("a TLS session that ended leaves no timer behind (its deadline held the connection for 30 min)", async () => {
    server = await startTestServer({ env: tlsEnv(tempDir()) });
    const timers = (): number => {
      Bun.gc(true);
      return heapStats().objectTypeCounts.Timeout ?? 0;
    };
    const session = async (): Promise<void> => {
      const c = await RawClient.connect(server!.port);
      await greet(c);
      await startTls(c);
      await c.cmd("EHLO client.example");
      expect(await c.cmd("QUIT")).toMatch(/^221 /);
      await c.waitClose();
    };
    await session(); // first use: anything created once
    const before = timers();
    for (let i = 0; i < 20; i++) await session();
    for (let i = 0; i < 50 && server.sessions.length < 21; i++) await Bun.sleep(20);
    expect(server.sessions.length).toBe(21);
    expect(timers() - before).toBeLessThan(5);
  });
});
