/**
 * The compiled `mailgw serve` with no DNS name server configured: an empty /etc/resolv.conf
 * bind-mounted in a private mount namespace (as a container or chroot without one). Rules on
 * spf then see temperror after the 5 s deadline; serve must say why, once (at start when the
 * rules need DNS, else at the first message whose rules do), not per message, and /healthz
 * carries it as a warning. Needs root (mount namespace); skipped with the reason otherwise.
 */
import { afterEach, afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";
import { RawClient, greet, simpleMessage, terminated } from "../smtp/helpers.ts";
import { cleanupBinary, serveDir, startServe, until, type ServeProcess } from "../smtp/serve-process.ts";

function skipReason(): string | null {
  if (userInfo().uid !== 0) return "not root (needs a mount namespace for /etc/resolv.conf)";
  const probe = spawnSync("unshare", ["--mount", "--propagation", "private", "true"]);
  return probe.status === 0 ? null : `unshare --mount failed: ${probe.stderr?.toString().trim()}`;
}
const SKIP = skipReason();
if (SKIP) console.warn(`skip serve-dns-no-resolver: ${SKIP}`);

const SPF_RULES = `domains: [company.com]
default: { action: archive }
rules:
  - name: spf-fail
    action: reject
    conditions: [{ field: spf, operator: equals, value: fail }]
`;
const NOTICE = (l: Record<string, unknown>): boolean => String(l.msg).startsWith("no DNS name server configured");

let serve: ServeProcess | null = null;
afterEach(async () => {
  if (serve && serve.proc.exitCode === null) await serve.stop("SIGKILL");
  serve = null;
}, 60_000);
afterAll(() => cleanupBinary(), 60_000);

/** serve (compiled) in `dir`, with an empty /etc/resolv.conf of its own. */
async function serveWithoutResolver(dir: string): Promise<ServeProcess> {
  writeFileSync(join(dir, "resolv.conf"), "# nothing here\n");
  const inNamespace = ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"', join(dir, "resolv.conf")];
  return startServe("binary", dir, {}, 20_000, inNamespace);
}

/** One message; the reply to its data, which the checks' 5 s deadline delays. */
async function send(port: number): Promise<string> {
  const c = await RawClient.connect(port);
  await greet(c, "mail.sender.example");
  for (const cmd of ["MAIL FROM:<a@sender.example>", "RCPT TO:<b@company.com>", "DATA"]) await c.cmd(cmd);
  c.write(terminated(simpleMessage()));
  const reply = await c.reply(15_000);
  c.end();
  return reply;
}

describe("serve: no DNS name server configured", () => {
  test.skipIf(SKIP !== null)("rules on spf: said once at start (not per message), and /healthz warns", async () => {
    const dir = serveDir();
    writeFileSync(join(dir, "rules.yaml"), SPF_RULES);
    serve = await serveWithoutResolver(dir);
    await serve.waitForLog(NOTICE);
    expect(serve.logs.find(NOTICE)).toMatchObject({ level: "warn", reason: "/etc/resolv.conf lists no nameserver", asking: "127.0.0.1" });
    for (let i = 0; i < 2; i++) expect(await send(serve.smtpPort)).toStartWith("250 2.0.0 Queued as ");
    await until("two session lines", async () => serve!.logs.filter((l) => l.msg === "smtp session").length === 2);
    expect(serve.logs.filter((l) => l.msg === "smtp session").map((l) => l.auth)).toEqual(["spf=temperror dkim=none dmarc=temperror", "spf=temperror dkim=none dmarc=temperror"]);
    expect(serve.logs.filter(NOTICE)).toHaveLength(1);
    const health = (await (await fetch(`${serve.httpUrl}healthz`)).json()) as { status: string; warnings: string[] };
    expect(health.status).toBe("ok");
    expect(health.warnings.some((w) => w.startsWith("no DNS name server configured"))).toBe(true);
  }, 40_000);

  test.skipIf(SKIP !== null)("rules without spf/dkim/dmarc: nothing said; a reload adding one is said at the next message, once", async () => {
    const dir = serveDir();
    serve = await serveWithoutResolver(dir);
    expect(await send(serve.smtpPort)).toStartWith("250 2.0.0 Queued as ");
    const health = (await (await fetch(`${serve.httpUrl}healthz`)).json()) as { warnings: string[] };
    expect(health.warnings.some((w) => w.startsWith("no DNS name server configured"))).toBe(false);
    expect(serve.logs.filter(NOTICE)).toHaveLength(0);
    writeFileSync(join(dir, "rules.yaml"), SPF_RULES.replace("domains: [company.com]", `domains: [company.com]\n# spf now`));
    serve.proc.kill("SIGHUP");
    await serve.waitForLog((l) => l.msg === "rules reloaded");
    for (let i = 0; i < 2; i++) expect(await send(serve.smtpPort)).toStartWith("250 2.0.0 Queued as ");
    expect(serve.logs.filter(NOTICE)).toHaveLength(1);
  }, 40_000);
});
