/**
 * A private OpenSMTPD (6.8, as Debian packages it) for the interoperability tests, run in the
 * foreground (`smtpd -d -v -f CONFIG`) with its log on stderr, written to a file in a temp dir.
 *
 * OpenSMTPD's queue (/var/spool/smtpd), control socket (/run/smtpd.sock), privilege-separation
 * chroot (/var/lib/opensmtpd/empty) and users (opensmtpd, opensmtpq) are fixed at compile
 * time, so it runs in a private mount namespace (test/helpers/mta-namespace.ts) whose overlays
 * put all of them under the instance's temp dir: the machine's /var/spool, /run and /etc are
 * never written, and `smtpctl` is run inside the same namespace. KEEP_OPENSMTPD_DIR=1 keeps an
 * instance's directory after `stop`, to look at after a failure.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { watchLog, type LogWatch } from "./interop.ts";
import { endChild, findSbin, namespaceSkipReason, namespaceUsers, runIn, spawnIsolated, type Overlay } from "./mta-namespace.ts";

export function opensmtpdSkipReason(): string | null {
  const reason = namespaceSkipReason("smtpd", "opensmtpd");
  if (reason) return reason;
  if (!findSbin("smtpctl")) return "smtpctl not found next to smtpd";
  return spawnSync("sh", ["-c", "command -v setpriv"], { env: { PATH: "/usr/bin:/bin:/usr/sbin:/sbin" } }).status === 0 ? null : "setpriv not installed (util-linux)";
}

export interface OpenSmtpd extends LogWatch {
  dir: string;
  /** Runs `smtpctl args` against this instance; returns stdout, throws on failure. */
  smtpctl(args: string[]): string;
  /** Envelope ids still in the queue (`smtpctl show queue`). */
  queued(): string[];
  /** `smtpctl schedule all`: every queued envelope is tried now, whatever its retry time. */
  scheduleAll(): void;
  stop(): Promise<void>;
}

/** Starts smtpd with `config` (smtpd.conf text) under `hostname` (/etc/mailname in its namespace). */
export async function startOpenSmtpd(hostname: string, config: string): Promise<OpenSmtpd> {
  const bin = findSbin("smtpd");
  if (!bin) throw new Error("smtpd not found");
  const dir = mkdtempSync(join(tmpdir(), "mailgw-opensmtpd-"));
  const conf = join(dir, "smtpd.conf");
  writeFileSync(conf, config, { mode: 0o644 });
  const users = namespaceUsers(["opensmtpd", "opensmtpq"]);
  const overlays: Overlay[] = [
    { target: "/etc", files: { ...users.files, mailname: `${hostname}\n` } },
    { target: "/var/spool" }, // smtpd makes /var/spool/smtpd itself, with the modes it insists on
    { target: "/var/lib", dirs: ["opensmtpd/empty"] },
    { target: "/run" },
  ];
  const proc = spawnIsolated(dir, overlays, [bin, "-d", "-v", "-T", "transfer", "-f", conf], { stdout: join(dir, "smtpd.out"), stderr: join(dir, "smtpd.log") });
  const log = watchLog(join(dir, "smtpd.log"), "opensmtpd");
  // smtpctl insists on running setgid opensmtpq, which only the package's postinst would set up.
  const queueGid = String(users.ids.opensmtpq);
  const smtpctl = (args: string[]): string => {
    const r = runIn(proc.pid, ["setpriv", `--regid=${queueGid}`, "--clear-groups", findSbin("smtpctl") as string, ...args]);
    if (r.status !== 0) throw new Error(`smtpctl ${args.join(" ")} failed (${r.status}): ${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  const instance: OpenSmtpd = {
    ...log,
    dir,
    smtpctl,
    queued: () => [...smtpctl(["show", "queue"]).matchAll(/^([0-9a-f]{16})\|/gm)].map((m) => m[1] as string),
    scheduleAll: () => void smtpctl(["schedule", "all"]),
    async stop() {
      await endChild(proc);
      if (!process.env.KEEP_OPENSMTPD_DIR) rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await log.waitForLog(/smtpd: ready|OpenSMTPD [\d.p]+ starting/, 0, 20_000);
    await waitForSocket(instance, proc);
  } catch (err) {
    await instance.stop();
    throw new Error(`opensmtpd did not start: ${String(err)}`);
  }
  return instance;
}

/** smtpctl answers once the control process is up. */
async function waitForSocket(o: OpenSmtpd, proc: ReturnType<typeof spawnIsolated>): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      o.smtpctl(["show", "queue"]);
      return;
    } catch (err) {
      if (proc.exitCode !== null) throw new Error(`smtpd exited ${proc.exitCode}:\n${o.tail(10)}`);
      if (Date.now() > deadline) throw err;
      await Bun.sleep(100);
    }
  }
}
