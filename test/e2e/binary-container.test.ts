/**
 * The compiled executable in the network a container may have: IPv6 turned off by sysctl
 * (`docker run --sysctl net.ipv6.conf.all.disable_ipv6=1`, hardened hosts). serve with
 * HTTP_HOST=:: still listens (the `::` socket takes IPv4 too), so the HEALTHCHECK,
 * `mailgw healthcheck`, must find it there instead of reporting the container unhealthy.
 * Runs in a network namespace of its own (unshare -n); skipped, with the reason, without root.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BARE_PATH, copyBinaryToTemp, findTool, type CopiedBinary } from "../packaging/binary.ts";

/** Starts serve on `::`, waits until it answers on 127.0.0.1, then asks `healthcheck` as the image does. */
const SCRIPT = `
ip link set lo up && sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.lo.disable_ipv6=1 || exit 97
"$0" serve >serve.log 2>&1 & pid=$!
i=0
until HTTP_HOST=127.0.0.1 "$0" healthcheck >/dev/null 2>&1; do
  i=$((i+1)); if [ $i -gt 100 ]; then kill $pid; exit 98; fi; sleep 0.2
done
"$0" healthcheck; rc=$?
kill -TERM $pid; wait $pid
exit $rc
`;

const unshare = findTool("unshare");
const netnsProbe = unshare ? Bun.spawnSync([unshare, "-n", "sh", "-c", "ip link set lo up && sysctl -qw net.ipv6.conf.lo.disable_ipv6=1"], { stdout: "ignore", stderr: "ignore" }) : null;
const SKIP = netnsProbe?.exitCode === 0 ? null : "needs unshare -n, ip and sysctl as root";
if (SKIP) console.log(`skipped: ${SKIP}`);

let binary: CopiedBinary;
let work: string;
beforeAll(() => {
  if (SKIP) return;
  binary = copyBinaryToTemp();
  work = mkdtempSync(join(tmpdir(), "mailgw-container-"));
  writeFileSync(join(work, "rules.yaml"), "domains: [example.test]\ndefault: { action: archive }\nrules: []\n");
}, 60_000);
afterAll(() => {
  binary?.cleanup();
  if (work) rmSync(work, { recursive: true, force: true });
}, 60_000);

test.skipIf(SKIP !== null)("HTTP_HOST=:: with IPv6 disabled: serve listens on IPv4 and healthcheck finds it (exit 0)", async () => {
  const proc = Bun.spawn([unshare as string, "-n", "sh", "-c", SCRIPT, binary.bin], {
    cwd: work,
    env: { PATH: BARE_PATH, HOME: work, SMTP_HOST: "::", SMTP_PORT: "30725", HTTP_HOST: "::", HTTP_PORT: "30726" },
    stdout: "pipe",
    stderr: "pipe",
    timeout: 60_000,
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
  expect(stdout).toStartWith("healthy: http://127.0.0.1:30726/healthz");
}, 70_000);
