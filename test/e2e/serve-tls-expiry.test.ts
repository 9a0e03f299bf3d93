/**
 * Whether the admin hears of a STARTTLS certificate running out, against the compiled
 * dist/mailgw: /healthz (and so `mailgw healthcheck` and Docker's health output) warns when the
 * certificate in force has expired, when it expires in under 14 days (a renewal that has been
 * failing), and when the last reload of the files was refused; it stays quiet about a fresh
 * certificate. Before, an expired certificate was said once in the start-up log, a refused
 * reload only in the log, and a certificate that expired while serve ran nowhere at all.
 * A certificate not valid yet is served with a warning in the log at start; a reload to one is
 * refused while the certificate in force is valid (it replaced it with only an info line).
 */
import { afterAll, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeCert, makeExpiredCert } from "../smtp/helpers.ts";
import { cleanupBinary, serveDir, startServe, type ServeProcess } from "../smtp/serve-process.ts";

const DAY = 86_400_000;
const dirs: string[] = [];
afterAll(() => {
  cleanupBinary();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}, 60_000);

/** openssl ca's date format (UTC): YYYYMMDDHHMMSSZ. */
function caDate(ms: number): string {
  return `${new Date(ms).toISOString().replace(/[-:T]/g, "").slice(0, 14)}Z`;
}

/** A self-signed certificate for localhost valid from `from` to `to` (unix ms). */
function certValid(dir: string, from: number, to: number): { key: string; cert: string } {
  const ca = join(dir, "dated-ca");
  mkdirSync(ca, { recursive: true });
  writeFileSync(join(ca, "index.txt"), "");
  writeFileSync(join(ca, "serial"), "01\n");
  writeFileSync(join(ca, "ca.cnf"), "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nserial = serial\nnew_certs_dir = .\ndefault_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n");
  const key = join(dir, "dated-key.pem");
  const cert = join(dir, "dated.pem");
  const run = (args: string[]) => execFileSync("openssl", args, { stdio: "ignore", cwd: ca });
  run(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", "req.csr", "-subj", "/CN=localhost"]);
  run(["ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", key, "-in", "req.csr", "-out", cert, "-startdate", caDate(from), "-enddate", caDate(to)]);
  return { key, cert };
}

async function healthWarnings(serve: ServeProcess): Promise<string[]> {
  const res = await fetch(`${serve.httpUrl.replace(/\/$/, "")}/healthz`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { warnings: string[] }).warnings.filter((w) => /TLS|certificate/.test(w));
}

async function withServe(files: { key: string; cert: string }, check: (serve: ServeProcess, dir: string) => Promise<void>): Promise<void> {
  const dir = serveDir();
  dirs.push(dir);
  const key = join(dir, "key.pem");
  const cert = join(dir, "cert.pem");
  copyFileSync(files.key, key);
  copyFileSync(files.cert, cert);
  const serve = await startServe("binary", dir, { SMTP_TLS_KEY: key, SMTP_TLS_CERT: cert });
  try {
    await check(serve, dir);
  } finally {
    expect(await serve.stop("SIGTERM")).toBe(0);
  }
}

test("/healthz warns about an expired, a soon-expiring and a refused certificate, not about a fresh one (binary)", async () => {
  const work = serveDir();
  dirs.push(work);
  const now = Date.now();

  await withServe(makeExpiredCert(work), async (serve) => {
    expect(await healthWarnings(serve)).toEqual([
      "the STARTTLS certificate expired on 2020-01-02T00:00:00.000Z: senders that verify certificates will not deliver over it; renew it",
    ]);
  });

  // A 90-day certificate with 3 days left: certbot should have renewed it 27 days ago.
  const ending = now + 3 * DAY - 3_600_000;
  await withServe(certValid(join(work), now - 87 * DAY, ending), async (serve) => {
    expect(await healthWarnings(serve)).toEqual([
      `the STARTTLS certificate expires on ${new Date(Math.floor(ending / 1000) * 1000).toISOString()} (in 2 days): check that its renewal works`,
    ]);
  });

  await withServe(makeCert(work, "fresh"), async (serve, dir) => {
    expect(await healthWarnings(serve)).toEqual([]);
    // A renewal that left a half-written certificate: refused, and said so until it is fixed.
    writeFileSync(join(dir, "cert.pem"), "-----BEGIN CERTIFICATE-----\nMIIB\n");
    serve.proc.kill("SIGHUP");
    await serve.waitForLog((l) => l.msg === "TLS certificate reload failed; the current certificate stays in force");
    expect(await healthWarnings(serve)).toEqual(["the last TLS certificate reload was refused (the log says why); the previous certificate is in force"]);
    const next = makeCert(work, "next");
    copyFileSync(next.key, join(dir, "key.pem"));
    copyFileSync(next.cert, join(dir, "cert.pem"));
    serve.proc.kill("SIGHUP");
    await serve.waitForLog((l) => l.msg === "TLS certificate reloaded");
    expect(await healthWarnings(serve)).toEqual([]);
  });
}, 120_000);

test("a certificate not valid yet: served with a warning at start; a reload to one refused while the one in force is valid (binary)", async () => {
  const work = serveDir();
  dirs.push(work);
  const from = Date.now() + 3 * DAY;
  const future = certValid(work, from, from + 90 * DAY);
  const notBefore = new Date(Math.floor(from / 1000) * 1000).toISOString();
  const warned = (l: Record<string, unknown>): boolean => l.level === "warn" && String(l.msg).includes(`is not valid before ${notBefore}`);

  await withServe(makeCert(work, "valid-now"), async (serve, dir) => {
    expect(serve.logs.some(warned)).toBe(false);
    copyFileSync(future.key, join(dir, "key.pem"));
    copyFileSync(future.cert, join(dir, "cert.pem"));
    serve.proc.kill("SIGHUP");
    // Before, it replaced the valid certificate with an info line while verifying senders were
    // turned away for three days.
    const refused = await serve.waitForLog((l) => l.msg === "TLS certificate reload failed; the current certificate stays in force");
    expect(String(refused.error)).toContain(`is not valid before ${notBefore}`);
    expect(serve.logs.some((l) => l.msg === "TLS certificate reloaded")).toBe(false);
  });

  await withServe(future, async (serve) => {
    await serve.waitForLog(warned);
    expect(await healthWarnings(serve)).toEqual([`the STARTTLS certificate is not valid before ${notBefore}: senders that verify certificates will not deliver over it until then`]);
  });
}, 120_000);
