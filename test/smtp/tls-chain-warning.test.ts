/**
 * SMTP_TLS_CERT with a CA-issued certificate but without its intermediate (certbot's cert.pem
 * instead of fullchain.pem) is warned about at start and on reload: the handshake works, so
 * nothing else would tell the admin until MTA-STS senders defer.
 */
import { describe, expect, test } from "bun:test";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createTlsManager } from "../../src/smtp/tls-manager.ts";
import { missingChainWarning } from "../../src/smtp/tls-files.ts";
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
});
