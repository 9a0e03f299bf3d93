/**
 * STARTTLS against the REAL `mailgw serve` process — from source (`bun src/main.ts serve`)
 * and as the compiled dist/mailgw copied outside the repository — because STARTTLS under Bun
 * has had runtime-specific bugs (bun#21541, bun#25044, smtp-server#199): handshake with swaks
 * and nodemailer, the two plaintext-injection cases, a 10 MB message over TLS (archived byte
 * for byte), certificate reload on SIGHUP without dropping a TLS session, SIGTERM → exit 0;
 * SMTP_TLS_REQUIRED refusing every command but EHLO, HELO, STARTTLS, NOOP and QUIT before TLS.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import nodemailer from "nodemailer";
import { findTool } from "../packaging/binary.ts";
import { RawClient, greet, makeCert, sendMail } from "../smtp/helpers.ts";
import { cleanupBinary, serveDir, startServe, type ServeMode } from "../smtp/serve-process.ts";

afterAll(() => cleanupBinary(), 60_000);

const SWAKS = findTool("swaks");
/** swaks does STARTTLS only with Net::SSLeay (Debian: libnet-ssleay-perl, a Recommends). */
const SWAKS_TLS = SWAKS !== null && Bun.spawnSync([SWAKS, "--support"]).stdout.toString().includes("TLS supported");
if (!SWAKS) console.warn("skip: swaks not installed (apt-get install -y swaks libnet-ssleay-perl)");
else if (!SWAKS_TLS) console.warn("skip (swaks STARTTLS leg): swaks lacks Net::SSLeay (apt-get install -y libnet-ssleay-perl)");

async function startTls(c: RawClient): Promise<string> {
  expect(await c.cmd("STARTTLS")).toMatch(/^220 /);
  await c.upgrade();
  return (c.socket as TLSSocket).getPeerCertificate().fingerprint256;
}

async function archived(dir: string, id: string, ms = 5000): Promise<string> {
  const root = join(dir, "data/archive");
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    for (const day of existsSync(root) ? readdirSync(root) : []) {
      const file = join(root, day, `${id}.eml`);
      if (existsSync(file)) return file;
    }
    await Bun.sleep(50);
  }
  throw new Error(`archive file for ${id} not found`);
}

async function swaks(port: number, tls: boolean): Promise<{ code: number; out: string }> {
  const args = [SWAKS ?? "swaks", "-4", "--server", `127.0.0.1:${port}`, "--from", "a@sender.example", "--to", "b@company.com", "--header", "Subject: swaks"];
  const proc = Bun.spawn(tls ? [...args, "--tls"] : args, { stdout: "pipe", stderr: "pipe", timeout: 20_000 });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, out: out + err };
}

describe.each(["source", "binary"] as ServeMode[])("mailgw serve STARTTLS (%s)", (mode) => {
  test("handshake (swaks, nodemailer), injection cases, 10 MB over TLS, SIGHUP cert reload, SIGTERM exit 0", async () => {
    const dir = serveDir();
    const first = makeCert(dir, "first");
    const second = makeCert(dir, "second");
    const key = join(dir, "key.pem");
    const cert = join(dir, "cert.pem");
    copyFileSync(first.key, key);
    copyFileSync(first.cert, cert);
    const serve = await startServe(mode, dir, { SMTP_TLS_KEY: key, SMTP_TLS_CERT: cert });
    try {
      if (SWAKS) {
        for (const tls of SWAKS_TLS ? [false, true] : [false]) {
          const r = await swaks(serve.smtpPort, tls);
          expect({ tls, code: r.code, queued: /250 2\.0\.0 Queued as/.test(r.out) }).toEqual({ tls, code: 0, queued: true });
          if (tls) expect(r.out).toContain("TLS started");
        }
      }

      const transport = nodemailer.createTransport({ host: "127.0.0.1", port: serve.smtpPort, requireTLS: true, tls: { rejectUnauthorized: false } });
      const info = await transport.sendMail({ from: "a@sender.example", to: "b@company.com", subject: "nodemailer tls", text: "hi" });
      transport.close();
      expect(info.response).toMatch(/^250 2\.0\.0 Queued as \S+/);

      const whole = await RawClient.connect(serve.smtpPort);
      await greet(whole);
      whole.write("STARTTLS\r\nRSET\r\n");
      expect(await whole.reply()).toMatch(/^220 /);
      await whole.upgrade();
      expect(await whole.cmd("NOOP")).toBe("250 2.0.0 OK");
      whole.end();

      const partial = await RawClient.connect(serve.smtpPort);
      await greet(partial);
      partial.write("STARTTLS\r\nRSE");
      expect(await partial.reply()).toMatch(/^220 /);
      await partial.upgrade();
      expect(await partial.cmd("T")).toMatch(/^500 /);
      partial.end();

      // A client that talks plaintext after 220: the handshake fails, its session line says so.
      const plain = await RawClient.connect(serve.smtpPort);
      await greet(plain, "plaintext.example");
      expect(await plain.cmd("STARTTLS")).toMatch(/^220 /);
      plain.write("MAIL FROM:<a@sender.example>\r\n");
      const failed = await serve.waitForLog((l) => l.msg === "smtp session" && l.helo === "plaintext.example");
      expect(String(failed.error)).toStartWith("TLS handshake failed: ");

      // 10 MB over TLS, and this TLS session stays open across the certificate reload below.
      const big = await RawClient.connect(serve.smtpPort);
      await greet(big);
      const before = await startTls(big);
      // No REQUIRETLS after the handshake (a relay without TLS could not keep its promise).
      expect(await big.cmd("EHLO big.example")).not.toContain("REQUIRETLS");
      expect(await big.cmd("MAIL FROM:<a@sender.example> REQUIRETLS")).toStartWith("555 5.5.4");
      expect(await big.cmd("RSET")).toStartWith("250");
      const line = `${"0123456789abcdef".repeat(4)}\r\n`;
      const body = line.repeat(Math.ceil((10 * 1024 * 1024) / line.length));
      const message = `From: a@sender.example\r\nTo: b@company.com\r\nSubject: ten megabytes\r\n\r\n${body}`;
      const reply = await sendMail(big, "b@company.com", message);
      expect(reply).toMatch(/^250 2\.0\.0 Queued as \S+/);
      const id = reply.split(" ").pop() ?? "";
      // Our Received: header, then exactly the bytes sent over TLS.
      const copy = readFileSync(await archived(dir, id));
      const headerLength = copy.length - message.length;
      expect(copy.subarray(0, 10).toString()).toBe("Received: ");
      expect(headerLength).toBeGreaterThan(0);
      expect(headerLength).toBeLessThan(1000);
      expect(Buffer.compare(copy.subarray(headerLength), Buffer.from(message, "latin1"))).toBe(0);

      copyFileSync(second.key, key);
      copyFileSync(second.cert, cert);
      serve.proc.kill("SIGHUP");
      await serve.waitForLog((l) => l.msg === "TLS certificate reloaded");
      const fresh = await RawClient.connect(serve.smtpPort);
      await greet(fresh);
      expect(await startTls(fresh)).not.toBe(before);
      fresh.end();
      await big.cmd("EHLO still-here.example");
      expect(await sendMail(big)).toStartWith("250 2.0.0");
      big.end();
    } finally {
      const code = await serve.stop("SIGTERM");
      expect({ code, stderr: code === 0 ? "" : serve.stderr() }).toEqual({ code: 0, stderr: "" });
    }
    const sessions = serve.logs.filter((l) => l.msg === "smtp session");
    expect(sessions.some((s) => s.tls === true && typeof s.id === "string")).toBe(true);
  }, 90_000);

  test("SMTP_TLS_REQUIRED: only EHLO, HELO, STARTTLS, NOOP and QUIT in plain text (RFC 3207 §4); after STARTTLS mail is accepted", async () => {
    const dir = serveDir();
    const { key, cert } = makeCert(dir);
    const serve = await startServe(mode, dir, { SMTP_TLS_KEY: key, SMTP_TLS_CERT: cert, SMTP_TLS_REQUIRED: "true" });
    const refused = "530 5.7.0 Must issue a STARTTLS command first";
    try {
      const c = await RawClient.connect(serve.smtpPort);
      expect(await greet(c)).toContain("STARTTLS");
      for (const command of ["MAIL FROM:<a@sender.example>", "RCPT TO:<b@company.com>", "DATA", "RSET", "VRFY postmaster", "HELP"]) {
        expect([command, await c.cmd(command)]).toEqual([command, refused]);
      }
      expect(await c.cmd("NOOP")).toStartWith("250");
      await startTls(c);
      await c.cmd("EHLO client.example");
      expect(await c.cmd("RSET")).toStartWith("250");
      const reply = await sendMail(c);
      expect(reply).toMatch(/^250 2\.0\.0 Queued as /);
      await archived(dir, reply.split(" ").pop() ?? "");
      await c.cmd("QUIT");
      if (SWAKS) {
        // A real client that does not ask for STARTTLS is refused at MAIL and told why.
        const plain = await swaks(serve.smtpPort, false);
        expect(plain.code).not.toBe(0);
        expect(plain.out).toContain(refused);
      }
      if (SWAKS_TLS) expect((await swaks(serve.smtpPort, true)).out).toMatch(/250 2\.0\.0 Queued as /);
    } finally {
      const code = await serve.stop("SIGTERM");
      expect({ code, stderr: code === 0 ? "" : serve.stderr() }).toEqual({ code: 0, stderr: "" });
    }
  }, 60_000);
});
