/**
 * A TLS reload (or start) while the process is out of file descriptors (a shortage the
 * descriptor guard reports, smtp/descriptor-guard.ts) says so, instead of sending the admin to
 * check a key and certificate that are fine. In a subprocess that uses up its descriptors.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { findTool } from "../packaging/binary.ts";
import { makeCert, tempDir } from "./helpers.ts";

const OPENSSL = findTool("openssl");
const PRLIMIT = findTool("prlimit");
if (!OPENSSL) console.warn("skip: openssl not installed (apt-get install -y openssl)");
if (!PRLIMIT) console.warn("skip: prlimit not installed (apt-get install -y util-linux)");

test.skipIf(!OPENSSL || !PRLIMIT)("SMTP_TLS_KEY unreadable for want of descriptors: the error says so, not 'check the path and permissions'", () => {
  const dir = tempDir();
  const { key, cert } = makeCert(dir);
  const script = `
    import { openSync } from "node:fs";
    import { loadTlsMaterial } from ${JSON.stringify(join(import.meta.dir, "../../src/smtp/tls-files.ts"))};
    try { for (;;) openSync("/dev/null", "r"); } catch {}
    try { loadTlsMaterial(${JSON.stringify(key)}, ${JSON.stringify(cert)}); console.log("loaded"); } catch (err) { console.log(err.message); }
  `;
  const run = Bun.spawnSync([PRLIMIT ?? "prlimit", "--nofile=64:64", "--", process.execPath, "-e", script]);
  expect(run.stdout.toString().trim()).toBe(`SMTP_TLS_KEY=${key} cannot be read now: the process is out of file descriptors (EMFILE); the file itself is not the problem`);
});
