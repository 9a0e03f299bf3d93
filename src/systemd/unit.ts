/**
 * The text of the systemd unit and of the env-file template that `mailgw systemd install`
 * writes (SPEC §1). Pure: values in, text out; no file system, no environment.
 *
 * Trusts: its caller for absolute paths and validated ports. Arguments that contain
 * characters special to systemd (`%`, `$`, quotes, spaces) are escaped, so a strange install
 * path cannot change the meaning of the unit.
 */
import { VARIABLES } from "../config/variables.ts";

/** Where the installed files live on the target system (below `--root` when given). */
export const UNIT_PATH = "/etc/systemd/system/mailgw.service";
export const CONFIG_DIR = "/etc/mailgw";
export const ENV_FILE_PATH = `${CONFIG_DIR}/mailgw.env`;
export const RULES_PATH = `${CONFIG_DIR}/rules.yaml`;
/** systemd's StateDirectory=mailgw; the working directory of the service. */
export const STATE_DIR = "/var/lib/mailgw";

/** Values the env-file template sets (uncommented) so the service never uses relative paths. */
export const SERVICE_PATH_SETTINGS: ReadonlyMap<string, string> = new Map([
  ["DATA_DIR", `${STATE_DIR}/data`],
  ["DATABASE_URL", `file:${STATE_DIR}/data/mail-gateway.db`],
  ["RULES_FILE", RULES_PATH],
]);

/** Ports below this need CAP_NET_BIND_SERVICE (Linux net.ipv4.ip_unprivileged_port_start default). */
export const FIRST_UNPRIVILEGED_PORT = 1024;
/** Open files (sockets + spool files); SMTP bursts from many clients exceed the default 1024. */
export const SERVICE_NOFILE_LIMIT = 65536;
/**
 * How long `systemctl stop` (and `docker stop`) waits before SIGKILL: longer than serve's own
 * STOP_DEADLINE_MS (serve/signals.ts), so a stop that hangs is logged by serve first.
 */
export const STOP_TIMEOUT_SECONDS = 90;

export interface UnitOptions {
  /** Absolute argv that starts mailgw, without the `serve` subcommand. */
  exec: readonly string[];
  smtpPort: number;
  httpPort: number;
  /** Directories the service writes (data dir, database dir); absolute. */
  writablePaths: readonly string[];
  /** Version string written into the header comment. */
  version: string;
}

/** True when any listening port is privileged (0 means "any free port", not privileged). */
export function needsBindCapability(ports: readonly number[]): boolean {
  return ports.some((p) => p > 0 && p < FIRST_UNPRIVILEGED_PORT);
}

/** One argument of ExecStart=, escaped per systemd.service(5) "Command lines". */
export function quoteExecArg(arg: string): string {
  const escaped = arg.replaceAll("%", "%%").replaceAll("$", "$$$$");
  if (!/[\s"'\\;]/.test(escaped)) return escaped;
  return `"${escaped.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

/**
 * The service's sandbox, the same for every install: the whole file system read-only but the
 * paths in ReadWritePaths=, no devices, no kernel knobs, IP and Unix sockets only.
 */
const SANDBOX = [
  "NoNewPrivileges=yes",
  "ProtectSystem=strict",
  "ProtectHome=yes",
  "PrivateTmp=yes",
  "PrivateDevices=yes",
  "ProtectKernelTunables=yes",
  "ProtectKernelModules=yes",
  "ProtectKernelLogs=yes",
  "ProtectControlGroups=yes",
  "ProtectClock=yes",
  "ProtectHostname=yes",
  "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
  "RestrictNamespaces=yes",
  "RestrictRealtime=yes",
  "RestrictSUIDSGID=yes",
  "LockPersonality=yes",
  "SystemCallArchitectures=native",
  "# No MemoryDenyWriteExecute=: the JavaScript JIT needs writable+executable memory.",
] as const;

export function renderUnit(opts: UnitOptions): string {
  const privileged = needsBindCapability([opts.smtpPort, opts.httpPort]);
  const capabilities = privileged
    ? [
        `# SMTP_PORT=${opts.smtpPort} / HTTP_PORT=${opts.httpPort}: a port below ${FIRST_UNPRIVILEGED_PORT} needs this one capability.`,
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
      ]
    : ["# All ports are >= 1024: no capabilities at all.", "CapabilityBoundingSet="];
  const execStart = [...opts.exec, "serve"].map(quoteExecArg).join(" ");
  const writable = [...new Set(opts.writablePaths)].map(quoteExecArg).join(" ");
  return [
    `# ${UNIT_PATH} — written by \`mailgw systemd install\` (mailgw ${opts.version}).`,
    `# Settings: ${ENV_FILE_PATH}. Rules: ${RULES_PATH}. Data: ${STATE_DIR}.`,
    "# Re-run `mailgw systemd install` after moving the executable, changing ports below 1024, or",
    `# pointing DATA_DIR or DATABASE_URL outside ${STATE_DIR} (ReadWritePaths below follows them).`,
    "# Each install rewrites this file: put local changes in a drop-in (sudo systemctl edit mailgw).",
    "[Unit]",
    "Description=mailgw inbound mail gateway (SMTP, rules, archive / forward / webhook)",
    "# time-sync.target: on a VM without a clock until NTP runs, mail received at 1970-01-01 would be",
    "# archived under that day and removed by ARCHIVE_MAX_AGE_DAYS once the clock is right.",
    "After=network-online.target time-sync.target",
    "Wants=network-online.target",
    "",
    "[Service]",
    "Type=simple",
    `ExecStart=${execStart}`,
    "# SIGHUP reloads rules and the TLS certificate without dropping sessions.",
    "ExecReload=/bin/kill -HUP $MAINPID",
    "Restart=always",
    "RestartSec=2",
    `TimeoutStopSec=${STOP_TIMEOUT_SECONDS}`,
    "# A dynamic user named mailgw; if a system user 'mailgw' exists (useradd --system mailgw), systemd uses it.",
    "DynamicUser=yes",
    "User=mailgw",
    "Group=mailgw",
    "StateDirectory=mailgw",
    "StateDirectoryMode=0750",
    `WorkingDirectory=${STATE_DIR}`,
    `EnvironmentFile=${ENV_FILE_PATH}`,
    "UMask=0027",
    `LimitNOFILE=${SERVICE_NOFILE_LIMIT}`,
    ...SANDBOX,
    `ReadWritePaths=${writable}`,
    ...capabilities,
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
}

/**
 * The env file: every SPEC §2 variable with its help and default, commented out, except the
 * `active` ones (paths into /var/lib/mailgw and /etc/mailgw, ports chosen at install).
 */
export function renderEnvTemplate(active: ReadonlyMap<string, string>, version: string): string {
  const lines = [
    `# ${ENV_FILE_PATH} — settings of the mailgw service (written by mailgw ${version}).`,
    "# One KEY=value per line; a line starting with # is a comment and the default applies.",
    "# Apply changes: systemctl restart mailgw   (rules and certificates: systemctl reload mailgw)",
    "# This file may hold secrets (RELAY_SMTP_PASS, STATS_TOKEN, WEBHOOK_SECRET): keep it mode 0600.",
    "",
  ];
  for (const v of VARIABLES) {
    // A planned variable's help already says "(planned)".
    lines.push(`# ${v.help}${v.secret ? " [secret]" : ""}`);
    const value = active.get(v.name);
    if (value !== undefined) lines.push(`${v.name}=${value}`);
    else lines.push(`#${v.name}=${v.default}`);
    lines.push("");
  }
  return lines.join("\n");
}
