/**
 * Runs an MTA that cannot be installed on the test machine beside Postfix (Exim and OpenSMTPD
 * conflict with it: all three provide mail-transport-agent) in a private mount namespace.
 *
 * Their Debian packages are unpacked, not installed (`.ci/run`: `dpkg-deb -x` into
 * MAILGW_TEST_MTA_ROOT, default /opt/mailgw-test-mtas): no maintainer scripts ran, so their
 * system users, /etc/exim4/trusted_configs or /var/lib/opensmtpd/empty do not exist. Inside
 * `unshare --mount` each path the MTA insists on (compiled in, like OpenSMTPD's
 * /var/spool/smtpd) gets an overlay whose upper layer lives in the test's temp dir: the MTA
 * sees its users, its queue and its socket; the machine's /etc, /var and /run are never
 * written. The MTA is a child of the test process, so `stop` ends it (and only it). A binary
 * installed system-wide (/usr/sbin) is used first, in the same way.
 */
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { dirname, join } from "node:path";
import type { Subprocess } from "bun";

export const MTA_ROOT = process.env.MAILGW_TEST_MTA_ROOT ?? "/opt/mailgw-test-mtas";
const SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin";

/** The MTA binary: /usr/sbin/<name> when installed, else the unpacked one under MTA_ROOT. */
export function findSbin(name: string): string | null {
  for (const path of [join("/usr/sbin", name), join(MTA_ROOT, "usr/sbin", name)]) if (existsSync(path)) return path;
  return null;
}

/** Why an MTA cannot run here in a private namespace, or null. `pkg`: the Debian package with `binary`. */
export function namespaceSkipReason(binary: string, pkg: string): string | null {
  if (userInfo().uid !== 0) return `not root (${binary} needs root, and a mount namespace of its own)`;
  if (!findSbin(binary)) {
    return `${binary} not found in /usr/sbin or ${MTA_ROOT}/usr/sbin (${pkg} conflicts with postfix, so .ci/run unpacks it: ` +
      `apt-get download ${pkg} && dpkg-deb -x ${pkg}_*.deb ${MTA_ROOT}; set MAILGW_TEST_MTA_ROOT for another directory)`;
  }
  const missingLib = spawnSync("ldd", [findSbin(binary) as string]).stdout?.toString().match(/^\s*(\S+) => not found/m)?.[1];
  if (missingLib) return `${binary} needs ${missingLib}, not installed (apt-get install the lib* packages in: dpkg-deb -f ${pkg}_*.deb Depends)`;
  for (const tool of ["unshare", "nsenter", "mount"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`], { env: { PATH: SYSTEM_PATH } }).status !== 0) return `${tool} not installed (util-linux, mount)`;
  }
  if (!/\toverlay$/m.test(readFileSync("/proc/filesystems", "utf8"))) return "no overlay file system in this kernel (the private /etc, /var/spool… are overlays)";
  return null;
}

/** Files to add (or replace) under one directory as the MTA sees it, e.g. `/etc` → `{ "exim4/trusted_configs": "…" }`. */
export interface Overlay {
  target: string;
  files?: Record<string, string>;
  dirs?: string[];
}

export interface NamespaceUsers {
  /** `/etc` overlay files: the machine's passwd and group plus the missing users. */
  files: Record<string, string>;
  /** uid (= gid) of each requested user. */
  ids: Record<string, number>;
}

/**
 * The machine's users plus `names` that it lacks (each with a group of its own and an id no
 * user or group has), for the namespace's /etc/passwd and /etc/group.
 */
export function namespaceUsers(names: string[]): NamespaceUsers {
  let passwd = readFileSync("/etc/passwd", "utf8");
  let group = readFileSync("/etc/group", "utf8");
  const taken = new Set([...passwd.split("\n"), ...group.split("\n")].map((l) => Number(l.split(":")[2])));
  const ids: Record<string, number> = {};
  let next = 38900;
  for (const name of names) {
    const existing = new RegExp(`^${name}:[^:]*:(\\d+):`, "m").exec(passwd);
    if (existing) {
      ids[name] = Number(existing[1]);
      continue;
    }
    while (taken.has(next)) next++;
    taken.add(next);
    ids[name] = next;
    passwd += `${passwd.endsWith("\n") ? "" : "\n"}${name}:x:${next}:${next}:${name} (mailgw interop test):/nonexistent:/usr/sbin/nologin\n`;
    group += `${group.endsWith("\n") ? "" : "\n"}${name}:x:${next}:\n`;
  }
  return { files: { passwd, group }, ids };
}

/** Writes each overlay's upper layer under `dir/ns`; returns the shell commands mounting them. */
function prepareOverlays(dir: string, overlays: Overlay[]): string[] {
  return overlays.map((o, i) => {
    const upper = join(dir, "ns", `${i}${o.target.replaceAll("/", "_")}`);
    const work = join(dir, "ns", `${i}.work`);
    mkdirSync(work, { recursive: true });
    mkdirSync(upper, { recursive: true });
    for (const d of o.dirs ?? []) mkdirSync(join(upper, d), { recursive: true });
    for (const [path, content] of Object.entries(o.files ?? {})) {
      mkdirSync(dirname(join(upper, path)), { recursive: true });
      writeFileSync(join(upper, path), content);
    }
    return `mount -t overlay overlay -o lowerdir=${o.target},upperdir=${upper},workdir=${work} ${o.target}`;
  });
}

/** Where an overlay's upper layer is (what the MTA wrote below `target`). */
export function upperDir(dir: string, overlays: Overlay[], target: string): string {
  const i = overlays.findIndex((o) => o.target === target);
  return join(dir, "ns", `${i}${target.replaceAll("/", "_")}`);
}

/** Starts `cmd` in a new mount namespace with `overlays` mounted; the returned process is `cmd` itself (exec). */
export function spawnIsolated(dir: string, overlays: Overlay[], cmd: string[], output: { stdout: string; stderr: string }): Subprocess {
  const mounts = prepareOverlays(dir, overlays);
  const script = `set -e\n${mounts.join("\n")}\nexec "$@"`;
  return Bun.spawn(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", ...cmd], {
    env: { PATH: SYSTEM_PATH, HOME: "/nonexistent", LANG: "C" },
    stdin: "ignore",
    stdout: Bun.file(output.stdout),
    stderr: Bun.file(output.stderr),
  });
}

/** Runs `cmd` in the namespace of the running process `pid` (its /etc, its queue); output as text. */
export function runIn(pid: number, cmd: string[]): SpawnSyncReturns<string> {
  return spawnSync("nsenter", ["--target", String(pid), "--mount", "--", ...cmd], { encoding: "utf8", env: { PATH: SYSTEM_PATH, LANG: "C" }, timeout: 30_000 });
}

/** Ends a process we started: SIGTERM, then SIGKILL if it is still there after `ms`. */
export async function endChild(proc: Subprocess, ms = 10_000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill("SIGTERM");
  const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(ms).then(() => false)]);
  if (!exited) proc.kill("SIGKILL");
  await proc.exited;
}
