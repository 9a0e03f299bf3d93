/**
 * `mailgw systemd install` run by an administrator whose umask is stricter than 022 (CIS-hardened
 * hosts set 027 or 077, and sudo keeps the caller's). The service runs as its own user, so what
 * install creates for it must not depend on that umask: /etc/mailgw must be enterable and the
 * starter rules.yaml readable by that user, while the env file (secrets) stays 0600. And the
 * temporary file each one is written to first is created anew, never reached through a symlink.
 */
import { expect, test } from "bun:test";
import { chmodSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { installSystemd } from "../../src/systemd/install.ts";
import { findTool, runBinary } from "./binary.ts";
import { systemdTestRoots } from "./systemd-roots.ts";

const setup = systemdTestRoots("mailgw-root-umask-", 0o755);
const newRoot = (): string => setup.newRoot();

const mode = (path: string): string => (statSync(path).mode & 0o7777).toString(8).padStart(4, "0");

/** Runs install under `umask`, as `sudo` under a hardened login would. */
function installUnder(umask: string, root: string) {
  return runBinary("/bin/sh", ["-c", `umask ${umask}; exec "$0" systemd install --root "$1" --exec-path /usr/local/bin/mailgw`, setup.binary.bin, root], { cwd: setup.binary.dir });
}

test.each(["077", "027"])("umask %s: /etc/mailgw 0755, rules.yaml 0644, env file 0600, unit 0644", async (umask) => {
  const root = newRoot();
  const run = await installUnder(umask, root);
  expect({ exitCode: run.exitCode, stderr: run.stderr }).toEqual({ exitCode: 0, stderr: "" });
  expect({
    etcMailgw: mode(join(root, "etc/mailgw")),
    rules: mode(join(root, "etc/mailgw/rules.yaml")),
    env: mode(join(root, "etc/mailgw/mailgw.env")),
    unitDir: mode(join(root, "etc/systemd/system")),
    unit: mode(join(root, "etc/systemd/system/mailgw.service")),
  }).toEqual({ etcMailgw: "0755", rules: "0644", env: "0600", unitDir: "0755", unit: "0644" });
});

test("umask 077: the service's user (uid 65534) can lint the starter rules install wrote", async () => {
  const setpriv = findTool("setpriv");
  if (!setpriv || process.getuid?.() !== 0) {
    console.warn("skip: needs setpriv (util-linux) and a root test run to drop to uid 65534");
    return;
  }
  const root = newRoot();
  expect((await installUnder("077", root)).exitCode).toBe(0);
  const wrapper = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"];
  const lint = await runBinary(setup.binary.bin, ["rules", "lint", join(root, "etc/mailgw/rules.yaml")], { cwd: setup.binary.dir, wrapper });
  expect({ exitCode: lint.exitCode, stderr: lint.stderr }).toEqual({ exitCode: 0, stderr: "" });
});

test("an existing /etc/mailgw keeps the mode the operator gave it", async () => {
  const root = newRoot();
  mkdirSync(join(root, "etc/mailgw"), { recursive: true });
  chmodSync(join(root, "etc/mailgw"), 0o750);
  writeFileSync(join(root, "etc/mailgw/rules.yaml"), "domains: [mine.example]\n", { mode: 0o640 });
  expect((await installUnder("022", root)).exitCode).toBe(0);
  expect({ dir: mode(join(root, "etc/mailgw")), rules: mode(join(root, "etc/mailgw/rules.yaml")) }).toEqual({ dir: "0750", rules: "0640" });
});

test("a symlink at the temporary file's name is replaced, not written through or chmodded", () => {
  const root = newRoot();
  const victim = join(root, "victim");
  writeFileSync(victim, "keep\n", { mode: 0o600 });
  chmodSync(victim, 0o600);
  mkdirSync(join(root, "etc/mailgw"), { recursive: true });
  // In-process, so the temporary names (path.tmp-<pid>) are known.
  for (const name of ["etc/mailgw/rules.yaml", "etc/mailgw/mailgw.env"]) symlinkSync(victim, join(root, `${name}.tmp-${process.pid}`));
  installSystemd({ root, uid: 0, exec: ["/usr/local/bin/mailgw"], settings: new Map(), version: "test", runSystemctl: () => ({ ok: true, detail: "" }) });
  expect({ victim: readFileSync(victim, "utf8"), mode: mode(victim) }).toEqual({ victim: "keep\n", mode: "0600" });
  expect(readFileSync(join(root, "etc/mailgw/rules.yaml"), "utf8")).toContain("domains:");
  expect(mode(join(root, "etc/mailgw/rules.yaml"))).toBe("0644");
});
