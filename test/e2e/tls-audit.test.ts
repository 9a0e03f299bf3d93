/**
 * The STARTTLS configuration an admin audits before exposing port 25 (docs/tls-audit.md has the
 * testssl.sh findings and the reasoning), pinned with `openssl s_client -starttls smtp` against
 * the compiled dist/mailgw:
 *
 *  - TLS 1.0 to 1.3 handshake (opportunistic TLS on an MX: Postfix's default too), and
 *    TLS_FALLBACK_SCSV refuses a downgrade by a client that can do better;
 *  - no anonymous or NULL cipher; the server's order wins (forward secrecy and AEAD first);
 *    no TLS compression; TLS 1.2 session resumption;
 *  - the intermediate of a certbot-style fullchain.pem is sent: the chain verifies against
 *    the root alone; an ECDSA P-256 certificate gets ECDHE-ECDSA suites;
 *  - client-initiated renegotiation is refused and logged as what it is, the server goes on;
 *  - the session log line names the negotiated protocol and cipher (Postfix: `TLS connection
 *    established from …: TLSv1.3 with cipher …`), and so does the Received header, with the
 *    protocol actually negotiated (not the cipher suite's oldest one);
 *  - a renewal the way certbot does it (new files in archive/, live/ symlinks switched, no
 *    SIGHUP) reaches new connections while a session opened before goes on.
 *
 * Skips, with the reason printed, when openssl is missing.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { findTool } from "../packaging/binary.ts";
import { RawClient, greet, sendMail } from "../smtp/helpers.ts";
import { archivedCopy, cleanupBinary, serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";

afterAll(() => cleanupBinary(), 60_000);

const OPENSSL = findTool("openssl");
if (!OPENSSL) console.warn("skip: openssl not installed (apt-get install -y openssl)");

/** The handshakes below connect to 127.0.0.1; every certificate is for mx.test. */
const HOST = "mx.test";
/** OpenSSL 3 refuses TLS 1.0/1.1 (SHA-1 signatures) at its default security level 1. */
const OLD_PROTOCOLS = "DEFAULT:@SECLEVEL=0";

interface Pki {
  root: string;
  /** Issues a leaf for HOST signed by the intermediate; returns its key and leaf+intermediate PEM. */
  issue(name: string, keyType?: "rsa" | "ec"): { key: string; fullchain: string; leaf: string };
}

/** A root CA, an intermediate it signed (what Let's Encrypt's R10/E5 are), in `dir`. */
function makePki(dir: string): Pki {
  mkdirSync(dir, { recursive: true });
  const f = (name: string) => join(dir, name);
  const run = (args: string[]) => execFileSync(OPENSSL ?? "openssl", args, { stdio: "ignore" });
  run(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f("root-key.pem"), "-out", f("root.pem"), "-days", "2", "-subj", "/CN=mailgw audit root", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  run(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", f("int-key.pem"), "-out", f("int.csr"), "-subj", "/CN=mailgw audit intermediate"]);
  writeFileSync(f("int.ext"), "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n");
  run(["x509", "-req", "-in", f("int.csr"), "-CA", f("root.pem"), "-CAkey", f("root-key.pem"), "-CAcreateserial", "-out", f("int.pem"), "-days", "2", "-extfile", f("int.ext")]);
  writeFileSync(f("leaf.ext"), `subjectAltName=DNS:${HOST}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`);
  return {
    root: f("root.pem"),
    issue(name, keyType = "rsa") {
      const key = f(`${name}-key.pem`);
      const newkey = keyType === "rsa" ? ["-newkey", "rsa:2048"] : ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
      run(["req", ...newkey, "-nodes", "-keyout", key, "-out", f(`${name}.csr`), "-subj", `/CN=${HOST}`]);
      run(["x509", "-req", "-in", f(`${name}.csr`), "-CA", f("int.pem"), "-CAkey", f("int-key.pem"), "-CAcreateserial", "-out", f(`${name}.pem`), "-days", "2", "-extfile", f("leaf.ext")]);
      const fullchain = f(`${name}-fullchain.pem`);
      writeFileSync(fullchain, readFileSync(f(`${name}.pem`), "latin1") + readFileSync(f("int.pem"), "latin1"));
      return { key, fullchain, leaf: f(`${name}.pem`) };
    },
  };
}

/**
 * certbot's layout: `archive/<name>/fullchainN.pem` and `privkeyN.pem`, and `live/<name>/`
 * symlinks to the newest. `renew` adds version N+1 and switches the links one by one, the
 * certificate first, as certbot does (so a reload may briefly see a mismatched pair).
 */
function certbotLineage(root: string, first: { key: string; fullchain: string }) {
  const archive = join(root, "archive", HOST);
  const live = join(root, "live", HOST);
  mkdirSync(archive, { recursive: true });
  mkdirSync(live, { recursive: true });
  let version = 0;
  const install = (m: { key: string; fullchain: string }) => {
    version++;
    writeFileSync(join(archive, `fullchain${version}.pem`), readFileSync(m.fullchain));
    writeFileSync(join(archive, `privkey${version}.pem`), readFileSync(m.key), { mode: 0o600 });
    for (const [link, target] of [["fullchain.pem", `fullchain${version}.pem`], ["privkey.pem", `privkey${version}.pem`]] as const) {
      rmSync(join(live, link), { force: true });
      symlinkSync(join("..", "..", "archive", HOST, target), join(live, link));
    }
  };
  install(first);
  return { key: join(live, "privkey.pem"), cert: join(live, "fullchain.pem"), renew: install };
}

interface SClient {
  out: string;
  /** The protocol negotiated (`TLSv1.2`), null when the handshake failed. */
  protocol: string | null;
  cipher: string | null;
}

/**
 * `openssl s_client -starttls smtp` with `args`; `input` lines are sent once the handshake is
 * done (each step's text once the output matches the previous step's pattern), and stdin stays
 * open until the output matches `until` (or `ms` pass): s_client stops at the end of its input,
 * before it has seen the server's answer to a renegotiation.
 */
async function sClient(port: number, args: string[], input: string | [string, RegExp][] = "", until?: RegExp, ms = 10_000): Promise<SClient> {
  const proc = Bun.spawn([OPENSSL ?? "openssl", "s_client", "-starttls", "smtp", "-connect", `127.0.0.1:${port}`, "-servername", HOST, ...args], { stdin: "pipe", stdout: "pipe", stderr: "pipe", timeout: ms + 5000 });
  let out = "";
  const read = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) out += decoder.decode(chunk, { stream: true });
  };
  const reading = Promise.all([read(proc.stdout), read(proc.stderr)]);
  const deadline = Date.now() + ms;
  // Input only after the handshake: s_client reads stdin from then on anyway, but an early
  // end of input would make it quit before it printed the session.
  while (!/^(New|Reused|CONNECTED)|:error:/m.test(out) && Date.now() < deadline && proc.exitCode === null) await Bun.sleep(20);
  const waitFor = async (pattern: RegExp) => {
    while (!pattern.test(out) && Date.now() < deadline && proc.exitCode === null) await Bun.sleep(20);
  };
  for (const [text, next] of typeof input === "string" ? [[input, /(?:)/] as [string, RegExp]] : input) {
    // s_client quits at a refused handshake, maybe before this write: the pipe is then closed.
    try {
      if (text) proc.stdin.write(text);
      await proc.stdin.flush();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EPIPE") throw err;
      break;
    }
    await waitFor(next);
  }
  while (until && !until.test(out) && Date.now() < deadline && proc.exitCode === null) await Bun.sleep(20);
  try {
    await proc.stdin.end();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPIPE") throw err;
  }
  await proc.exited;
  await reading;
  const protocol = /^\s+Protocol\s*:\s*(TLSv\S+)/m.exec(out)?.[1] ?? /^New, (TLSv1\.3),/m.exec(out)?.[1] ?? null;
  const cipher = /^New, \S+, Cipher is (\S+)/m.exec(out)?.[1] ?? null;
  // After a failed handshake s_client still prints the session block, with the version it tried.
  if (cipher === null || cipher === "(NONE)") return { out, protocol: null, cipher: null };
  return { out, protocol, cipher };
}

/** The session line of the first session that ended after log index `from`. */
function sessionLineAfter(serve: ServeProcess, from: number): Promise<Record<string, unknown>> {
  return serve.waitForLog((l) => l.msg === "smtp session" && serve.logs.indexOf(l) >= from);
}

describe.skipIf(!OPENSSL)("STARTTLS audit (dist/mailgw, openssl s_client)", () => {
  test("protocols, ciphers, chain, renegotiation, resumption, log line and Received header, certbot renewal", async () => {
    const dir = serveDir();
    const pki = makePki(join(dir, "pki"));
    const first = pki.issue("first");
    const lineage = certbotLineage(join(dir, "letsencrypt"), first);
    const serve = await startServe("binary", dir, { SMTP_TLS_KEY: lineage.key, SMTP_TLS_CERT: lineage.cert });
    const port = serve.smtpPort;
    try {
      // Every protocol from TLS 1.0 up handshakes, and the session line says which one and with what.
      for (const [flag, version] of [["-tls1", "TLSv1"], ["-tls1_1", "TLSv1.1"], ["-tls1_2", "TLSv1.2"], ["-tls1_3", "TLSv1.3"]] as const) {
        const mark = serve.logs.length;
        const r = await sClient(port, [flag, "-cipher", OLD_PROTOCOLS], "QUIT\n", /221 /);
        expect({ flag, protocol: r.protocol, compression: /^Compression: NONE$/m.test(r.out) }).toEqual({ flag, protocol: version, compression: true });
        const line = await sessionLineAfter(serve, mark);
        expect({ tls: line.tls, tls_version: line.tls_version, tls_cipher: line.tls_cipher }).toEqual({ tls: true, tls_version: version, tls_cipher: r.cipher });
      }

      // A client that can do TLS 1.2 and falls back to 1.1 (a downgrade) is refused.
      const fallback = await sClient(port, ["-tls1_1", "-cipher", OLD_PROTOCOLS, "-fallback_scsv"], "QUIT\n");
      expect(fallback.protocol).toBeNull();
      expect(fallback.out).toContain("inappropriate fallback");

      // No anonymous or NULL suite, whatever the client offers.
      const anon = await sClient(port, ["-tls1_2", "-cipher", "aNULL:eNULL:@SECLEVEL=0"], "QUIT\n");
      expect(anon.protocol).toBeNull();
      expect(anon.out).toMatch(/handshake failure/);

      // The server's order wins: a client listing RSA key exchange and CBC first still gets
      // ECDHE with AES-GCM (forward secrecy, AEAD).
      const order = await sClient(port, ["-tls1_2", "-cipher", "AES128-SHA:AES256-SHA:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES128-GCM-SHA256"], "QUIT\n", /221 /);
      expect(order.cipher).toBe("ECDHE-RSA-AES128-GCM-SHA256");

      // The intermediate is sent: the chain verifies with only the root as trust anchor.
      const chain = await sClient(port, ["-tls1_3", "-CAfile", pki.root, "-verify_return_error", "-verify_hostname", HOST, "-showcerts"], "QUIT\n", /221 /);
      expect(chain.out).toContain("Verify return code: 0 (ok)");
      expect(chain.out).toMatch(/^ 0 s:CN ?= ?mx\.test\n\s+i:CN ?= ?mailgw audit intermediate$/m);
      expect(chain.out).toMatch(/^ 1 s:CN ?= ?mailgw audit intermediate\n\s+i:CN ?= ?mailgw audit root$/m);

      // TLS 1.2 session resumption (tickets): a busy sender saves the full handshake.
      const resumed = await sClient(port, ["-tls1_2", "-reconnect"], "QUIT\n", /221 /, 20_000);
      expect(resumed.out).toMatch(/^Reused, TLSv1\.2,/m);

      // Client-initiated renegotiation (a CPU-exhaustion vector) is refused; the log says so,
      // not that the handshake failed; the next client is served.
      const mark = serve.logs.length;
      // NOOP answered first: the session is up on the server's side too before R is sent.
      const reneg = await sClient(port, ["-tls1_2"], [["NOOP\n", /^250 2\.0\.0 OK/m], ["R\n", /(?:)/]], /RENEGOTIATING[\s\S]*(alert|error)/);
      expect(reneg.out).toContain("RENEGOTIATING");
      expect(reneg.out).toMatch(/no renegotiation/i);
      // The line with an error: the -reconnect sessions above may still be logging theirs after `mark`.
      const renegLine = await serve.waitForLog((l) => l.msg === "smtp session" && serve.logs.indexOf(l) >= mark && l.error !== undefined);
      expect(String(renegLine.error)).toMatch(/^TLS error after the handshake: .*NO_RENEGOTIATION/);
      expect(renegLine.tls_version).toBe("TLSv1.2");
      expect((await sClient(port, ["-tls1_2"], "QUIT\n", /221 /)).protocol).toBe("TLSv1.2");

      // The Received header names the protocol negotiated: a CBC suite that exists since TLS 1.0
      // but ran over TLS 1.2 is TLS 1.2 there (getCipher().version would say TLSv1.0).
      const cbc = await RawClient.connect(port);
      await greet(cbc);
      expect(await cbc.cmd("STARTTLS")).toMatch(/^220 /);
      await cbc.upgrade({ maxVersion: "TLSv1.2", ciphers: "ECDHE-RSA-AES128-SHA" });
      expect(await cbc.cmd("EHLO cbc.example")).toStartWith("250");
      const queued = await sendMail(cbc, "b@company.com");
      expect(queued).toMatch(/^250 2\.0\.0 Queued as \S+/);
      cbc.end();
      const id = queued.split(" ").pop() ?? "";
      let copy: Buffer | null = null;
      for (let i = 0; i < 100 && !copy; i++) copy = (await archivedCopy(dir, id)) ?? (await Bun.sleep(50), null);
      expect(copy?.toString("latin1")).toMatch(/^Received: from cbc\.example \(\[127\.0\.0\.1\]\)\r\n\tby mx\.test \(mailgw\) with ESMTPS\r\n\t\(version=TLSv1\.2 cipher=ECDHE-RSA-AES128-SHA\)\r\n/);
      const cbcLine = await serve.waitForLog((l) => l.msg === "smtp session" && l.helo === "cbc.example");
      expect({ v: cbcLine.tls_version, c: cbcLine.tls_cipher }).toEqual({ v: "TLSv1.2", c: "ECDHE-RSA-AES128-SHA" });

      // certbot renewal, no SIGHUP: a session under TLS from before goes on with the old
      // certificate; new connections get the new one, with its chain.
      const before = await RawClient.connect(port);
      await greet(before);
      expect(await before.cmd("STARTTLS")).toMatch(/^220 /);
      await before.upgrade();
      const oldFingerprint = (before.socket as TLSSocket).getPeerCertificate().fingerprint256;
      const second = pki.issue("second");
      lineage.renew(second);
      await serve.waitForLog((l) => l.msg === "TLS certificate reloaded");
      const fingerprint = (pem: string): string => execFileSync(OPENSSL ?? "openssl", ["x509", "-noout", "-fingerprint", "-sha256"], { input: pem }).toString().trim().split("=")[1] ?? "";
      const renewed = await sClient(port, ["-tls1_3", "-CAfile", pki.root, "-verify_return_error", "-verify_hostname", HOST], "QUIT\n", /221 /);
      expect(renewed.out).toContain("Verify return code: 0 (ok)");
      const served = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(renewed.out)?.[0] ?? "";
      expect(fingerprint(served)).toBe(fingerprint(readFileSync(second.leaf, "latin1")));
      expect(oldFingerprint).toBe(fingerprint(readFileSync(first.leaf, "latin1")));
      expect(await before.cmd("EHLO before.example")).toStartWith("250");
      expect(await sendMail(before, "b@company.com")).toMatch(/^250 2\.0\.0 Queued as /);
      before.end();
      expect(serve.logs.filter((l) => l.level === "error")).toEqual([]);
    } finally {
      expect(await serve.stop()).toBe(0);
    }
  }, 90_000);

  test("an ECDSA P-256 certificate: ECDHE-ECDSA suites, TLS 1.2 and 1.3", async () => {
    const dir = serveDir();
    const pki = makePki(join(dir, "pki"));
    const ec = pki.issue("ec", "ec");
    const serve = await startServe("binary", dir, { SMTP_TLS_KEY: ec.key, SMTP_TLS_CERT: ec.fullchain });
    try {
      const tls12 = await sClient(serve.smtpPort, ["-tls1_2", "-CAfile", pki.root, "-verify_return_error"], "QUIT\n", /221 /);
      expect({ protocol: tls12.protocol, cipher: tls12.cipher }).toEqual({ protocol: "TLSv1.2", cipher: "ECDHE-ECDSA-AES128-GCM-SHA256" });
      expect(tls12.out).toMatch(/Peer signature type: ECDSA/);
      const tls13 = await sClient(serve.smtpPort, ["-tls1_3", "-CAfile", pki.root, "-verify_return_error"], "QUIT\n", /221 /);
      expect(tls13.protocol).toBe("TLSv1.3");
      expect(tls13.out).toContain("Verify return code: 0 (ok)");
    } finally {
      expect(await serve.stop()).toBe(0);
    }
  }, 60_000);

  test("a CA-issued certificate without its intermediate (certbot's cert.pem): serve warns at start, STARTTLS still works", async () => {
    const dir = serveDir();
    const pki = makePki(join(dir, "pki"));
    const leafOnly = pki.issue("leaf-only");
    const serve = await startServe("binary", dir, { SMTP_TLS_KEY: leafOnly.key, SMTP_TLS_CERT: leafOnly.leaf });
    try {
      const warning = await serve.waitForLog((l) => l.level === "warn" && String(l.msg).includes("holds only the server certificate"));
      expect(String(warning.msg)).toContain(leafOnly.leaf);
      expect(String(warning.msg)).toContain("fullchain.pem");
      const r = await sClient(serve.smtpPort, ["-tls1_3"], "QUIT\n", /221 /);
      expect(r.protocol).toBe("TLSv1.3");
    } finally {
      expect(await serve.stop()).toBe(0);
    }
  }, 60_000);
});
