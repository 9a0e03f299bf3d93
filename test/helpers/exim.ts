/**
 * A private Exim 4 (Debian's default MTA) for the interoperability tests, run as a foreground
 * daemon (`exim -bdf`) under its own configuration file, spool directory and log files in a
 * temp dir (test/helpers/mta-namespace.ts: a private mount namespace, so the unpacked
 * exim4-daemon-light finds its Debian-exim user and /etc/exim4/trusted_configs, which lists the
 * test's configuration so that Exim keeps its privileges when it re-executes itself for
 * deliveries and queue runs). It never touches /etc/exim4 or /var/spool/exim4 of the machine.
 *
 * The daemon runs with `-d-all+transport`: its debug output (`exim.debug`) holds every SMTP
 * command the delivery processes sent (`SMTP>>`, or `SMTP|>` for a command held back to be
 * pipelined) and every reply they read (`SMTP<<`). KEEP_EXIM_DIR=1 keeps an instance's
 * directory after `stop`, to look at after a failure.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeCert } from "../smtp/helpers.ts";
import { watchLog, type LogWatch } from "./interop.ts";
import { endChild, findSbin, namespaceSkipReason, namespaceUsers, runIn, spawnIsolated } from "./mta-namespace.ts";

export const EXIM_USER = "Debian-exim";

export function eximSkipReason(): string | null {
  return namespaceSkipReason("exim4", "exim4-daemon-light") ?? (spawnSync("sh", ["-c", "command -v openssl"]).status === 0 ? null : "openssl not installed");
}

export interface EximOptions {
  hostname: string;
  /** `daemon_smtp_ports` (the first one is also what the tests connect to). */
  ports: number[];
  /** Main-section settings on top of the base ones (tls_*, acl_smtp_*, auth_advertise_hosts…). */
  main?: string;
  acl?: string;
  routers: string;
  transports: string;
  authenticators?: string;
  /** Offer STARTTLS (tls_advertise_hosts = *) with a self-signed certificate for localhost. */
  serverTls?: boolean;
}

export interface Exim extends LogWatch {
  dir: string;
  pid: number;
  /** The first of `ports`: where to submit mail to this Exim. */
  port: number;
  /** The transport debug output: the SMTP dialogues of Exim's deliveries, in order. */
  debug: LogWatch;
  /** Runs this Exim (same configuration, same namespace) with `args`; returns stdout, throws on failure. */
  exim(args: string[]): string;
  /** Ids of the messages in the queue (from `exim -bp`). */
  queued(): string[];
  /** `exim -qff`: a queue run that delivers everything, retry times or not. */
  flush(): void;
  paniclog(): string[];
  stop(): Promise<void>;
}

/**
 * Log fields the tests read: connections (count), TLS cipher and peer on every line, the
 * recipients and the SMTP reply on `<=`/`=>` lines (C="250 …"), pipelining (L) and chunking
 * (K) flags, and the full text of refused commands.
 */
const LOG_SELECTOR = "+smtp_connection +received_recipients +smtp_protocol_error +smtp_syntax_error +tls_cipher +tls_certificate_verified +pipelining +smtp_confirmation +incoming_port +outgoing_port +8bitmime +smtp_no_mail +incoming_interface +pid";

function configuration(dir: string, bin: string, o: EximOptions): string {
  return `# mailgw interop test instance (test/helpers/exim.ts)
exim_path = ${bin}
primary_hostname = ${o.hostname}
qualify_domain = ${o.hostname}
spool_directory = ${join(dir, "spool")}
log_file_path = ${join(dir, "log")}/%slog
pid_file_path = ${join(dir, "exim.pid")}
keep_environment =
daemon_smtp_ports = ${o.ports.join(" : ")}
local_interfaces = 127.0.0.1
host_lookup =
rfc1413_hosts =
${o.serverTls ? `tls_advertise_hosts = *\ntls_certificate = ${join(dir, "exim.pem")}\ntls_privatekey = ${join(dir, "exim-key.pem")}` : "tls_advertise_hosts ="}
log_selector = ${LOG_SELECTOR}
${o.main ?? ""}

begin acl
${o.acl ?? ""}

begin routers
${o.routers}

begin transports
${o.transports}

begin retry
# The first retry an hour away: a deferred message waits for the test's queue run (-qff).
* * F,1h,1h

begin authenticators
${o.authenticators ?? ""}
`;
}

export async function startExim(o: EximOptions): Promise<Exim> {
  const bin = findSbin("exim4");
  if (!bin) throw new Error("exim4 not found");
  const dir = mkdtempSync(join(tmpdir(), "mailgw-exim-"));
  chmodSync(dir, 0o755); // the Exim user reaches its spool, log and certificate files
  const users = namespaceUsers([EXIM_USER]);
  const uid = users.ids[EXIM_USER] as number;
  for (const d of ["spool", "log"]) {
    mkdirSync(join(dir, d));
    chownSync(join(dir, d), uid, uid);
  }
  const config = join(dir, "configure");
  writeFileSync(config, configuration(dir, bin, o), { mode: 0o644 });
  // Exim reads its key after dropping to its own user.
  if (o.serverTls) chownSync(makeCert(dir, "exim").key, uid, uid);
  const overlays = [{ target: "/etc", files: { ...users.files, "exim4/trusted_configs": `${config}\n` } }];
  const command = [bin, "-C", config, "-bdf", "-d-all+transport"];
  const proc = spawnIsolated(dir, overlays, command, { stdout: join(dir, "exim.out"), stderr: join(dir, "exim.debug") });
  const instance = eximInstance(dir, config, proc, o.ports[0] ?? 0);
  try {
    await instance.waitForLog(/exim [\d.]+ daemon started: pid=\d+/, 0, 20_000);
  } catch (err) {
    await instance.stop();
    throw new Error(`exim did not start: ${String(err)}\n${instance.debug.tail(10)}`);
  }
  return instance;
}

function eximInstance(dir: string, config: string, proc: ReturnType<typeof spawnIsolated>, port: number): Exim {
  const main = watchLog(join(dir, "log", "mainlog"), "exim");
  const exim = (args: string[]): string => {
    const r = runIn(proc.pid, [findSbin("exim4") as string, "-C", config, ...args]);
    if (r.status !== 0) throw new Error(`exim ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
    return r.stdout;
  };
  return {
    ...main,
    dir,
    pid: proc.pid,
    port,
    debug: watchLog(join(dir, "exim.debug"), "exim debug"),
    exim,
    queued: () => [...exim(["-bp"]).matchAll(/^\s*\S+\s+\S+\s+(\w{6}-\w{6}-\w{2,4})\b/gm)].map((m) => m[1] as string),
    flush: () => void exim(["-qff"]),
    paniclog: () => watchLog(join(dir, "log", "paniclog"), "exim panic").linesSince(0),
    async stop() {
      await endChild(proc);
      if (!process.env.KEEP_EXIM_DIR) rmSync(dir, { recursive: true, force: true });
    },
  };
}
