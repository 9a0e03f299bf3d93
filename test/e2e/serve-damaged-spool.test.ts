/**
 * A queued forward's spool file damaged before it is sent: truncated to 0 bytes (a power cut on a
 * file system that lost the data, a careless `> file`) or its bytes zeroed. Each row records the
 * size and CRC-32 of the bytes accepted; the compiled serve sent whatever the file held (an empty
 * message reached the relay, marked delivered, and the file was removed: the mail was gone with a
 * success in the log). Now the delivery fails, saying why, and the file stays for the admin.
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../packaging/binary.ts";
import { relayVars, startRelay } from "../delivery/helpers.ts";
import { greet, RawClient, sendMail, simpleMessage } from "../smtp/helpers.ts";
import { cleanupBinary, serveDir, startServe } from "../smtp/serve-process.ts";

afterAll(cleanupBinary, 60_000);

const RULES = `domains: [company.com]
default: { action: archive, category: default }
rules:
  - name: fwd
    priority: 10
    action: forward
    forward_to: [inbox@dest.example]
    conditions:
      - { field: rcpt, operator: equals, value: fwd@company.com }
`;

function queue(dir: string, args: string[]): { stdout: string; exitCode: number } {
  const r = Bun.spawnSync([process.execPath, join(REPO_ROOT, "src/main.ts"), "queue", ...args], { cwd: dir, env: { PATH: process.env.PATH ?? "", HOME: dir } });
  return { stdout: r.stdout.toString(), exitCode: r.exitCode };
}

test("a queued forward whose spool file was truncated or zeroed is not sent: failed with the reason, file kept", async () => {
  const relay = await startRelay();
  relay.mode = "tempfail";
  const dir = serveDir();
  writeFileSync(join(dir, "rules.yaml"), RULES);
  const env = relayVars(relay, { QUEUE_RETRY_BASE_SECONDS: "3600" });
  const first = await startServe("binary", dir, env);
  const ids: string[] = [];
  try {
    const c = await RawClient.connect(first.smtpPort);
    await greet(c);
    for (const subject of ["truncated", "zeroed"]) {
      const reply = await sendMail(c, "fwd@company.com", simpleMessage(subject, `body of ${subject}\r\n`));
      ids.push(/^250 2\.0\.0 Queued as (\S+)/.exec(reply)?.[1] ?? reply);
    }
    c.end();
    for (const id of ids) await first.waitForLog((l) => l.msg === "deferred" && l.id === id);
  } finally {
    expect(await first.stop()).toBe(0);
  }
  const [truncated = "", zeroed = ""] = ids;
  const spoolFile = (id: string): string => join(dir, "data", "spool", `${id}.eml`);
  writeFileSync(spoolFile(truncated), "");
  writeFileSync(spoolFile(zeroed), new Uint8Array(readFileSync(spoolFile(zeroed)).byteLength));
  expect(queue(dir, ["retry", "--all"]).exitCode).toBe(0);

  relay.mode = "ok";
  const second = await startServe("binary", dir, env);
  try {
    for (const id of ids) await second.waitForLog((l) => l.msg === "failed" && l.id === id);
    expect(relay.received).toEqual([]);
    const list = JSON.parse(queue(dir, ["list", "--json"]).stdout) as { id: string; state: string; lastError: string }[];
    const byId = new Map(list.map((d) => [d.id, d]));
    expect(byId.get(truncated)?.state).toBe("failed");
    expect(byId.get(truncated)?.lastError).toStartWith("spool file damaged: 0 bytes on disk, ");
    expect(byId.get(zeroed)?.state).toBe("failed");
    expect(byId.get(zeroed)?.lastError).toStartWith("spool file damaged: its bytes are not the ones accepted (CRC-32 ");
    // Kept for the admin to look at (and `mailgw queue drop`).
    for (const id of ids) expect(existsSync(spoolFile(id))).toBe(true);
  } finally {
    expect(await second.stop()).toBe(0);
    await relay.close();
  }
}, 60_000);
