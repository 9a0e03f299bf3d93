/**
 * A private Postfix (3.4 or later) for the interoperability tests: its own config, queue and data
 * directories under a temp dir, only the services a test needs in master.cf (no chroot), its
 * log in a file (maillog_file through the postlog service, no syslog). It runs as
 * `postfix -c DIR start-fg`, a child of the test process, so `stop` can always end it (and
 * only it). The system Postfix in /etc/postfix is never used or changed.
 *
 * Postfix's daemons drop to the `postfix` user, which needs root: `postfixSkipReason` says
 * why the tests cannot run here, for them to print before skipping. KEEP_POSTFIX_DIR=1 keeps
 * an instance's directory (log, queue) after `stop`, to look at after a failure.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { freePortsIn, watchLog, type LogWatch } from "./interop.ts";

/** This helper's port range (the other suites use ephemeral ports or other ranges). */
export const freePorts = (n: number): Promise<number[]> => freePortsIn(n, 21000, 21999);

export interface QueuedMessage {
  queue_id: string;
  queue_name: string;
  recipients: { address: string; delay_reason?: string }[];
}

export interface Postfix extends LogWatch {
  dir: string;
  etc: string;
  /** `postqueue -j`: what is still queued. */
  queued(): QueuedMessage[];
  /** `postqueue -f`: deliver everything queued now, backoff or not. */
  flush(): void;
  stop(): Promise<void>;
}

/** Why Postfix interop tests cannot run here, or null. `tools`: further commands they need. */
export function postfixSkipReason(tools: string[] = []): string | null {
  if (userInfo().uid !== 0) return "not root (a private Postfix instance needs root to start its daemons)";
  for (const tool of ["postfix", "postconf", "postqueue", "openssl", ...tools]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`], { env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } }).status !== 0) {
      const pkg = tool === "saslpasswd2" ? "sasl2-bin" : tool.startsWith("post") ? "postfix" : tool;
      return `${tool} not installed (apt-get install -y --no-install-recommends ${pkg})`;
    }
  }
  if (tools.includes("saslpasswd2")) {
    const missing = ["libplain.so", "liblogin.so", "libsasldb.so"].filter((m) => !saslModule(m));
    if (missing.length > 0) return `Cyrus SASL modules ${missing.join(", ")} not installed (apt-get install -y --no-install-recommends libsasl2-modules libsasl2-modules-db)`;
  }
  const version = spawnSync("postconf", ["-dh", "mail_version"]).stdout?.toString().trim() ?? "";
  const [major = 0, minor = 0] = version.split(".").map(Number);
  if (major < 3 || (major === 3 && minor < 4)) return `Postfix ${version || "?"} is older than 3.4 (no maillog_file)`;
  return null;
}

/** Whether a Cyrus SASL plugin (e.g. libplain.so) is in /usr/lib/<arch>/sasl2 or /usr/lib/sasl2. */
function saslModule(name: string): boolean {
  const dirs = ["/usr/lib/sasl2", ...readdirSync("/usr/lib").map((d) => join("/usr/lib", d, "sasl2"))];
  return dirs.some((d) => existsSync(join(d, name)));
}

/** Daemons every instance needs (qmgr, cleanup, bounces, showq and pickup for postqueue, the log). */
const BASE_SERVICES = [
  "pickup unix n - n 60 1 pickup",
  "cleanup unix n - n - 0 cleanup",
  "qmgr unix n - n 300 1 qmgr",
  "tlsmgr unix - - n 1000? 1 tlsmgr",
  "rewrite unix - - n - - trivial-rewrite",
  "bounce unix - - n - 0 bounce",
  "defer unix - - n - 0 bounce",
  "trace unix - - n - 0 bounce",
  "verify unix - - n - 1 verify",
  "flush unix n - n 1000? 0 flush",
  "proxymap unix - - n - - proxymap",
  "smtp unix - - n - - smtp",
  "relay unix - - n - - smtp",
  "error unix - - n - - error",
  "retry unix - - n - - error",
  "discard unix - - n - - discard",
  "showq unix n - n - - showq",
  "scache unix - - n - 1 scache",
  "anvil unix - - n - 1 anvil",
  "postlog unix-dgram n - n - 1 postlogd",
];

export interface PostfixOptions {
  /** main.cf settings on top of the base ones below. */
  main: Record<string, string>;
  /** master.cf lines for the test's inet services, e.g. `127.0.0.1:36025 inet n - n - - smtpd`. */
  services: string[];
  /** Called with the config directory before start (certificates, SASL files). */
  prepare?: (etc: string) => void;
}

export async function startPostfix(opts: PostfixOptions): Promise<Postfix> {
  const dir = mkdtempSync(join(tmpdir(), "mailgw-postfix-"));
  chmodSync(dir, 0o755); // the postfix user must reach its queue and data directories
  const etc = join(dir, "etc");
  const log = join(dir, "maillog");
  for (const d of ["etc", "queue", "data"]) mkdirSync(join(dir, d));
  chownSync(join(dir, "data"), uidOf("postfix"), -1);
  const main: Record<string, string> = {
    compatibility_level: "3.6",
    queue_directory: join(dir, "queue"),
    data_directory: join(dir, "data"),
    maillog_file: log,
    maillog_file_prefixes: dir,
    inet_interfaces: "127.0.0.1",
    inet_protocols: "ipv4",
    mydestination: "",
    alias_maps: "",
    alias_database: "",
    local_transport: "error:5.1.1 no local delivery in this test instance",
    smtp_dns_support_level: "disabled",
    // Bounded queue runs: postqueue -f and the qmgr's own wake-ups, never minutes of waiting.
    queue_run_delay: "1s",
    smtp_connect_timeout: "5s",
    ...opts.main,
  };
  writeFileSync(join(etc, "main.cf"), Object.entries(main).map(([k, v]) => `${k} = ${v}\n`).join(""));
  writeFileSync(join(etc, "master.cf"), [...opts.services, ...BASE_SERVICES].join("\n") + "\n");
  opts.prepare?.(etc);
  const proc = Bun.spawn(["postfix", "-c", etc, "start-fg"], { stdout: "pipe", stderr: "pipe" });
  const instance = postfixInstance(dir, etc, log, proc);
  try {
    await instance.waitForLog(/postfix\/master\[\d+\]: daemon started/, 0, 20_000);
  } catch (err) {
    const output = (await new Response(proc.stderr).text().catch(() => "")).trim();
    await instance.stop();
    throw new Error(`postfix did not start: ${output} ${String(err)}`);
  }
  return instance;
}

function uidOf(user: string): number {
  const id = spawnSync("id", ["-u", user]).stdout?.toString().trim();
  if (!id) throw new Error(`no ${user} user (is the postfix package installed?)`);
  return Number(id);
}

function postfixInstance(dir: string, etc: string, log: string, proc: Subprocess): Postfix {
  return {
    ...watchLog(log, "postfix"),
    dir,
    etc,
    queued() {
      const out = spawnSync("postqueue", ["-c", etc, "-j"]).stdout?.toString() ?? "";
      return out.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as QueuedMessage);
    },
    flush() {
      const r = spawnSync("postqueue", ["-c", etc, "-f"]);
      if (r.status !== 0) throw new Error(`postqueue -f failed: ${r.stderr?.toString()}`);
    },
    async stop() {
      spawnSync("postfix", ["-c", etc, "stop"]);
      const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(10_000).then(() => false)]);
      if (!exited) {
        // Only this instance's master (its pid file) and our own child: never a broad kill.
        const pid = Number(readFileSync(join(dir, "queue", "pid", "master.pid"), "utf8").trim());
        if (pid > 1) process.kill(pid, "SIGKILL");
        proc.kill("SIGKILL");
      }
      if (!process.env.KEEP_POSTFIX_DIR) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Cyrus SASL for smtpd with a sasldb holding one user. The files go to `etc/sasl`: Debian's
 * Postfix reads smtpd.conf from $config_directory/sasl whatever cyrus_sasl_config_path says,
 * other builds from cyrus_sasl_config_path, which `saslMainSettings` points there too.
 */
export function writeSasldb(etc: string, realm: string, user: string, password: string): void {
  const sasl = join(etc, "sasl");
  mkdirSync(sasl, { recursive: true });
  const db = join(sasl, "sasldb2");
  const r = spawnSync("saslpasswd2", ["-p", "-f", db, "-c", "-u", realm, user], { input: password });
  if (r.status !== 0) throw new Error(`saslpasswd2 failed: ${r.stderr?.toString()}`);
  // smtpd reads it as the postfix user; root-owned, as `postfix check` wants files in etc.
  chownSync(db, 0, Number(spawnSync("id", ["-g", "postfix"]).stdout?.toString().trim()));
  chmodSync(db, 0o640);
  writeFileSync(join(sasl, "smtpd.conf"), `pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: ${db}\n`);
}

export function saslMainSettings(etc: string, realm: string): Record<string, string> {
  return {
    smtpd_sasl_auth_enable: "yes",
    smtpd_sasl_type: "cyrus",
    smtpd_sasl_path: "smtpd",
    cyrus_sasl_config_path: join(etc, "sasl"),
    smtpd_sasl_local_domain: realm,
  };
}
