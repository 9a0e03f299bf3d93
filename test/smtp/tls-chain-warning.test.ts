/**
 * SMTP_TLS_CERT with a CA-issued certificate but without its intermediate (certbot's cert.pem
 * instead of fullchain.pem), or with an intermediate that did not issue it (one kept from an
 * earlier certificate), is warned about at start and on reload: the handshake works, so nothing
 * else would tell the admin until MTA-STS senders defer.
 */
import { describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createTlsManager } from "../../src/smtp/tls-manager.ts";
import { extraPairWarnings, missingChainWarning } from "../../src/smtp/tls-files.ts";
import { findTool } from "../packaging/binary.ts";
import { captureLogger, makeCaSignedCert, makeCert, tempDir } from "./helpers.ts";

const OPENSSL = findTool("openssl");
if (!OPENSSL) console.warn("skip: openssl not installed (apt-get install -y openssl)");

describe.skipIf(!OPENSSL)("missing intermediate warning", () => {
  test("leaf alone: warned, naming the file and the issuer; with its issuer appended or self-signed: not", () => {
    const dir = tempDir();
    const signed = makeCaSignedCert(dir);
    const self = makeCert(dir, "self");
    const warning = missingChainWarning(signed.cert, readFileSync(signed.cert));
    expect(warning).toStartWith(`SMTP_TLS_CERT=${signed.cert} holds only the server certificate`);
    expect(warning).toContain("CN=mailgw test private CA");
    expect(warning).toContain("fullchain.pem");
    const chain = join(dir, "fullchain.pem");
    writeFileSync(chain, Buffer.concat([readFileSync(signed.cert), readFileSync(signed.ca)]));
    expect(missingChainWarning(chain, readFileSync(chain))).toBeNull();
    expect(missingChainWarning(self.cert, readFileSync(self.cert))).toBeNull();
  });

  test("logged at start and again after a reload to a leaf-only file", () => {
    const dir = tempDir();
    const signed = makeCaSignedCert(dir);
    const cert = join(dir, "cert.pem");
    writeFileSync(cert, Buffer.concat([readFileSync(signed.cert), readFileSync(signed.ca)]));
    const logs = captureLogger();
    const tls = createTlsManager({ enabled: true, keyPath: signed.key, certPath: cert, required: false }, logs);
    expect(logs.lines.filter((l) => l.level === "warn")).toEqual([]);
    copyFileSync(signed.cert, cert);
    expect(tls.reload()).toBe(true);
    expect(logs.lines.filter((l) => l.level === "warn").map((l) => l.msg)).toEqual([expect.stringContaining(`SMTP_TLS_CERT=${cert} holds only the server certificate`)]);
  });

  test("an intermediate that did not issue the server certificate (kept from an earlier one): warned, naming both; the right one anywhere after it: not", () => {
    const dir = tempDir();
    const pki = twoIntermediates(dir);
    const file = (name: string, parts: string[]) => {
      const path = join(dir, name);
      writeFileSync(path, parts.map((p) => readFileSync(p, "latin1")).join(""));
      return path;
    };
    const stale = file("stale.pem", [pki.leaf, pki.other]);
    const warning = missingChainWarning(stale, readFileSync(stale));
    expect(warning).toStartWith(`SMTP_TLS_CERT=${stale} does not hold the issuer of its server certificate (CN=Intermediate B)`);
    expect(warning).toContain("(CN=Intermediate A) did not issue it");
    expect(warning).toContain("fullchain.pem");
    const good = file("good.pem", [pki.leaf, pki.issuer]);
    expect(missingChainWarning(good, readFileSync(good))).toBeNull();
    const unordered = file("unordered.pem", [pki.leaf, pki.other, pki.issuer]);
    expect(missingChainWarning(unordered, readFileSync(unordered))).toBeNull();
    // Same name as the issuer, another key (a re-keyed intermediate): the signature decides.
    const impostor = file("impostor.pem", [pki.leaf, pki.sameNameOtherKey]);
    expect(missingChainWarning(impostor, readFileSync(impostor))).toStartWith(`SMTP_TLS_CERT=${impostor} does not hold the issuer`);
  });

  test("logged at start for a stale intermediate; a reload to the right chain is quiet", () => {
    const dir = tempDir();
    const pki = twoIntermediates(dir);
    const cert = join(dir, "fullchain.pem");
    writeFileSync(cert, readFileSync(pki.leaf, "latin1") + readFileSync(pki.other, "latin1"));
    const logs = captureLogger();
    const tls = createTlsManager({ enabled: true, keyPath: pki.leafKey, certPath: cert, required: false }, logs);
    expect(logs.lines.filter((l) => l.level === "warn").map((l) => l.msg)).toEqual([expect.stringContaining(`SMTP_TLS_CERT=${cert} does not hold the issuer`)]);
    writeFileSync(cert, readFileSync(pki.leaf, "latin1") + readFileSync(pki.issuer, "latin1"));
    expect(tls.reload()).toBe(true);
    expect(logs.lines.filter((l) => l.level === "warn")).toHaveLength(1);
  });

  // Postfix's smtpd_tls_chain_files: one file with an RSA key and chain, then an ECDSA key and chain.
  test("two key and certificate pairs in the files (an RSA+ECDSA file as Postfix's): the unused pair is named at start", () => {
    const dir = tempDir();
    const pki = twoIntermediates(dir);
    const rsa = makeCert(dir, "rsa");
    execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", join(dir, "ec-key.pem"), "-out", join(dir, "ec.pem"), "-days", "2", "-subj", "/CN=localhost"], { stdio: "ignore" });
    const both = join(dir, "chain-files.pem");
    writeFileSync(both, [rsa.key, rsa.cert, join(dir, "ec-key.pem"), join(dir, "ec.pem")].map((f) => readFileSync(f, "latin1")).join(""));
    const logs = captureLogger();
    createTlsManager({ enabled: true, keyPath: both, certPath: both, required: false }, logs);
    expect(logs.lines.filter((l) => l.level === "warn").map((l) => l.msg)).toEqual([expect.stringContaining(`SMTP_TLS_KEY=${both} holds 2 private keys: only the first is used`)]);

    // Two CA-issued server certificates concatenated: the second goes out as a chain certificate.
    const twice = join(dir, "twice.pem");
    writeFileSync(twice, [pki.leaf, pki.issuer, pki.leaf].map((f) => readFileSync(f, "latin1")).join(""));
    expect(extraPairWarnings(pki.leafKey, readFileSync(pki.leafKey), twice, readFileSync(twice))).toEqual([
      `SMTP_TLS_CERT=${twice} holds a server certificate after the first (certificate 3, CN=localhost): it is not served as such but sent to senders as part of the first one's chain; keep the server certificate and its intermediates only`,
    ]);
    const good = join(dir, "good.pem");
    writeFileSync(good, [pki.leaf, pki.issuer].map((f) => readFileSync(f, "latin1")).join(""));
    expect(extraPairWarnings(pki.leafKey, readFileSync(pki.leafKey), good, readFileSync(good))).toEqual([]);
  });
});

/** A root, intermediates A and B under it, a server certificate issued by B, and a second "B" with its own key. */
function twoIntermediates(dir: string): { leaf: string; leafKey: string; issuer: string; other: string; sameNameOtherKey: string } {
  const at = (f: string) => join(dir, f);
  const run = (args: string[]) => execFileSync("openssl", args, { stdio: "ignore", cwd: dir });
  writeFileSync(at("ca.ext"), "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n");
  writeFileSync(at("leaf.ext"), "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n");
  run(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "root-key.pem", "-out", "root.pem", "-days", "2", "-subj", "/CN=Root", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  const sign = (name: string, subject: string, ca: string, ext: string) => {
    run(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}-key.pem`, "-out", `${name}.csr`, "-subj", subject]);
    run(["x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.pem`, "-CAkey", `${ca}-key.pem`, "-CAcreateserial", "-out", `${name}.pem`, "-days", "2", "-extfile", ext]);
  };
  sign("int-a", "/CN=Intermediate A", "root", "ca.ext");
  sign("int-b", "/CN=Intermediate B", "root", "ca.ext");
  sign("int-b2", "/CN=Intermediate B", "root", "ca.ext");
  sign("leaf", "/CN=localhost", "int-b", "leaf.ext");
  return { leaf: at("leaf.pem"), leafKey: at("leaf-key.pem"), issuer: at("int-b.pem"), other: at("int-a.pem"), sameNameOtherKey: at("int-b2.pem") };
}
