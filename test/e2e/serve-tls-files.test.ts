/**
 * The STARTTLS key and certificate files an admin actually ends up with, against the compiled
 * dist/mailgw: RSA keys in PKCS#1 and PKCS#8 and an EC key in SEC1 start, so do files that
 * begin with a UTF-8 byte order mark (openssl reads them; serve refused them); an encrypted key
 * (PKCS#8 and the legacy `Proc-Type: 4,ENCRYPTED`), the two files swapped and a certificate
 * file cut short are refused with an error that says which file and what is wrong with it, and
 * so is a chain concatenated in the wrong order (intermediate first).
 * Before, all of these were "SMTP_TLS_KEY=… and SMTP_TLS_CERT=… are not a matching PEM key and
 * certificate: …BAD_DECRYPT" (or NO_START_LINE, BAD_END_LINE): the admin compared two files
 * that matched. On a running serve, a fullchain cut short by a renewal is refused the same way
 * in the log and the certificate in force stays.
 */
import { afterAll, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { copyFileSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { RawClient, greet, makeCaSignedCert } from "../smtp/helpers.ts";
import { cleanupBinary, runServeOnce, serveDir, startServe } from "../smtp/serve-process.ts";

const dirs: string[] = [];
afterAll(() => {
  cleanupBinary();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}, 60_000);

function openssl(dir: string, ...args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
}

/** A self-signed certificate for `key` (a file in `dir`), named `<key>.crt`. */
function certFor(dir: string, key: string): string {
  openssl(dir, "req", "-x509", "-key", key, "-out", `${key}.crt`, "-days", "2", "-subj", "/CN=localhost");
  return join(dir, `${key}.crt`);
}

test("key formats that start, and encrypted, swapped, cut-short or misordered files refused naming the file and the fault (binary)", async () => {
  const dir = serveDir();
  dirs.push(dir);
  openssl(dir, "genrsa", "-traditional", "-out", "rsa-pkcs1.pem", "2048");
  openssl(dir, "pkey", "-in", "rsa-pkcs1.pem", "-out", "rsa-pkcs8.pem");
  openssl(dir, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ec-sec1.pem");
  openssl(dir, "pkey", "-in", "rsa-pkcs1.pem", "-aes256", "-passout", "pass:secret", "-out", "enc-pkcs8.pem");
  openssl(dir, "rsa", "-in", "rsa-pkcs1.pem", "-traditional", "-aes256", "-passout", "pass:secret", "-out", "enc-pkcs1.pem");
  expect(readFileSync(join(dir, "enc-pkcs1.pem"), "latin1")).toContain("Proc-Type: 4,ENCRYPTED");
  const rsaCert = certFor(dir, "rsa-pkcs1.pem");

  const start = (key: string, cert: string) => runServeOnce("binary", dir, { SMTP_HOST: "127.0.0.1", HTTP_HOST: "127.0.0.1", SMTP_TLS_KEY: join(dir, key), SMTP_TLS_CERT: cert }, [], 6_000);
  for (const key of ["rsa-pkcs1.pem", "rsa-pkcs8.pem", "ec-sec1.pem"]) {
    const cert = key === "ec-sec1.pem" ? certFor(dir, key) : rsaCert;
    // Still running when the timeout stops it: it started (exit 1 would be a refusal).
    const r = await start(key, cert);
    expect({ key, started: r.stdout.includes('"msg":"mailgw serve started"'), stderr: r.stderr }).toEqual({ key, started: true, stderr: "" });
  }

  // Both saved by an editor that starts UTF-8 files with a byte order mark (Windows Notepad):
  // openssl reads them, so must serve.
  const bom = Buffer.from([0xef, 0xbb, 0xbf]);
  writeFileSync(join(dir, "bom-key.pem"), Buffer.concat([bom, readFileSync(join(dir, "rsa-pkcs1.pem"))]));
  writeFileSync(join(dir, "bom-cert.pem"), Buffer.concat([bom, readFileSync(rsaCert)]));
  const withBom = await start("bom-key.pem", join(dir, "bom-cert.pem"));
  expect({ started: withBom.stdout.includes('"msg":"mailgw serve started"'), stderr: withBom.stderr }).toEqual({ started: true, stderr: "" });

  const refusal = async (key: string, cert: string): Promise<string> => {
    const r = await start(key, cert);
    expect(r.exitCode).toBe(1);
    return r.stderr.trim();
  };
  for (const key of ["enc-pkcs8.pem", "enc-pkcs1.pem"]) {
    const err = await refusal(key, rsaCert);
    expect(err).toStartWith(`mailgw: SMTP_TLS_KEY=${join(dir, key)} is encrypted (protected by a passphrase)`);
    expect(err).not.toContain("matching");
  }
  // The two variables swapped.
  expect(await refusal("rsa-pkcs1.pem.crt", join(dir, "rsa-pkcs1.pem"))).toStartWith(`mailgw: SMTP_TLS_KEY=${join(dir, "rsa-pkcs1.pem.crt")} holds a certificate, not a private key (are SMTP_TLS_KEY and SMTP_TLS_CERT swapped?)`);
  // A fullchain cut in the middle of its second certificate (the CA's).
  const signed = makeCaSignedCert(dir);
  const fullchain = readFileSync(signed.cert, "latin1") + readFileSync(signed.ca, "latin1");
  const cut = join(dir, "cut-fullchain.pem");
  writeFileSync(cut, fullchain.slice(0, fullchain.lastIndexOf("-----END")));
  copyFileSync(signed.key, join(dir, "signed-key.pem"));
  expect(await refusal("signed-key.pem", cut)).toBe(`mailgw: SMTP_TLS_CERT=${cut} is cut short: certificate 2 of 2 has no END line (a partly written file?)`);
  // The chain concatenated intermediate first (`cat chain.pem cert.pem`).
  const reversed = join(dir, "reversed-chain.pem");
  writeFileSync(reversed, readFileSync(signed.ca, "latin1") + readFileSync(signed.cert, "latin1"));
  expect(await refusal("signed-key.pem", reversed)).toBe(
    `mailgw: SMTP_TLS_CERT=${reversed} is in the wrong order: the key in SMTP_TLS_KEY=${join(dir, "signed-key.pem")} belongs to certificate 2 of the file, ` +
      "but the server's certificate must come first, then its intermediates (certbot's fullchain.pem order)",
  );
  // The real mismatch still says so.
  expect(await refusal("ec-sec1.pem", rsaCert)).toContain("are not a matching PEM key and certificate");
}, 120_000);

test("a running serve refuses a fullchain cut short on reload, says why, and keeps the certificate in force (binary)", async () => {
  const dir = serveDir();
  dirs.push(dir);
  const signed = makeCaSignedCert(dir);
  const fullchain = join(dir, "fullchain.pem");
  const whole = readFileSync(signed.cert, "latin1") + readFileSync(signed.ca, "latin1");
  writeFileSync(fullchain, whole);
  const serve = await startServe("binary", dir, { SMTP_TLS_KEY: signed.key, SMTP_TLS_CERT: fullchain });
  /** The serial of the certificate a STARTTLS handshake gets now. */
  const served = async (): Promise<string> => {
    const c = await RawClient.connect(serve.smtpPort);
    await greet(c);
    expect(await c.cmd("STARTTLS")).toMatch(/^220 /);
    await c.upgrade();
    const serial = (c.socket as TLSSocket).getPeerCertificate().serialNumber;
    c.end();
    return serial;
  };
  try {
    const before = await served();
    expect(before).toMatch(/^[0-9A-F]+$/);
    writeFileSync(fullchain, whole.slice(0, whole.lastIndexOf("-----END")));
    serve.proc.kill("SIGHUP");
    const failed = await serve.waitForLog((l) => l.msg === "TLS certificate reload failed; the current certificate stays in force");
    expect(failed.error).toBe(`SMTP_TLS_CERT=${fullchain} is cut short: certificate 2 of 2 has no END line (a partly written file?)`);
    expect(await served()).toBe(before);
  } finally {
    expect(await serve.stop("SIGTERM")).toBe(0);
  }
}, 60_000);

test("a FIFO or a device put at the certificate path: refused on reload at once, sessions and /healthz go on, the real file is taken again (binary)", async () => {
  const dir = serveDir();
  dirs.push(dir);
  const signed = makeCaSignedCert(dir);
  const fullchain = join(dir, "fullchain.pem");
  writeFileSync(fullchain, readFileSync(signed.cert, "latin1") + readFileSync(signed.ca, "latin1"));
  const serve = await startServe("binary", dir, { SMTP_TLS_KEY: signed.key, SMTP_TLS_CERT: fullchain });
  try {
    renameSync(fullchain, `${fullchain}.real`);
    execFileSync("mkfifo", [fullchain]);
    // The watcher sees the change by itself: no signal, which is what used to free the stuck read.
    const failed = await serve.waitForLog((l) => l.msg === "TLS certificate reload failed; the current certificate stays in force", 10_000);
    expect(failed.error).toBe(`SMTP_TLS_CERT=${fullchain} is not a regular file (a FIFO, a device or a directory): point it at the PEM file`);
    const c = await RawClient.connect(serve.smtpPort);
    expect(await greet(c)).toBeDefined();
    expect(await c.cmd("STARTTLS")).toMatch(/^220 /);
    c.end();
    expect((await fetch(`${serve.httpUrl}/healthz`)).status).toBe(200);
    rmSync(fullchain);
    symlinkSync("/dev/zero", fullchain);
    serve.proc.kill("SIGHUP");
    await serve.waitForLog((l) => l.msg === "TLS certificate reload failed; the current certificate stays in force" && String(l.error).includes("not a regular file") && l !== failed);
    rmSync(fullchain);
    renameSync(`${fullchain}.real`, fullchain);
    serve.proc.kill("SIGHUP");
    await serve.waitForLog((l) => l.msg === "TLS certificate files valid again; the certificate in force is unchanged" || l.msg === "TLS certificate reloaded");
  } finally {
    expect(await serve.stop("SIGTERM")).toBe(0);
  }
}, 60_000);
