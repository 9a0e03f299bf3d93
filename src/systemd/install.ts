/**
 * `mailgw systemd install|uninstall`: writes (or removes) the unit, the env file and a
 * starter rules.yaml, under `root` (`--root DIR`) or on the live system.
 *
 * Trusts: the settings map it is given (already resolved by src/config) and the caller's uid.
 * Never overwrites an existing env file or rules file (they hold the operator's settings and
 * secrets); always rewrites the unit, which is generated. Writes go to a temp file that is
 * renamed into place. On the live system it refuses to run without root, and a missing or
 * failing `systemctl` becomes a warning in the report, not a failure: the files are in place.
 * On a file-system error it throws a CliError naming the path.
 */
import { chmodSync, closeSync, existsSync, fchmodSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { CliError, describeError } from "../errors.ts";
import { isCompiled, NO_ENV_FILE_FLAG } from "../config/bun-dotenv.ts";
import { databasePath } from "../config/config.ts";
import { decodeEnvFile, parseDotenv } from "../config/parse-values.ts";
import { systemdReadingWarnings } from "./env-file-check.ts";
import { listenAddressesOverlap } from "../config/scalar-values.ts";
import { VARIABLES } from "../config/variables.ts";
import { STARTER_RULES_YAML } from "./starter-rules.ts";
import {
  CONFIG_DIR,
  ENV_FILE_PATH,
  RULES_PATH,
  SERVICE_PATH_SETTINGS,
  STATE_DIR,
  UNIT_PATH,
  renderEnvTemplate,
  renderUnit,
} from "./unit.ts";

export interface SystemctlResult {
  ok: boolean;
  detail: string;
}
export type RunSystemctl = (args: readonly string[]) => SystemctlResult;

export interface SystemdOptions {
  /** Write below this directory instead of `/` (no root needed, no systemctl). */
  root: string | null;
  /** Effective uid of the caller; 0 = root. */
  uid: number;
  /** Argv that starts mailgw (see resolveExec). */
  exec: readonly string[];
  /** Raw variable values at install time (flags > env > .env > defaults), from src/config. */
  settings: ReadonlyMap<string, string>;
  version: string;
  runSystemctl: RunSystemctl;
  /** SMTP_PORT / HTTP_PORT given as --smtp-port / --http-port (checked against an existing env file). */
  portFlags?: ReadonlyMap<string, string>;
}

export interface SystemdReport {
  written: string[];
  kept: string[];
  removed: string[];
  warnings: string[];
  nextSteps: string[];
}

/**
 * ExecStart argv: `override` if given; the executable itself when compiled; otherwise
 * (running from source) bun plus the absolute entry script, with a warning.
 */
export function resolveExec(execPath: string, mainPath: string, override?: string): { exec: string[]; warning?: string } {
  if (override !== undefined) {
    if (!isAbsolute(override)) throw new CliError(`--exec-path ${override} is not absolute: give the full path, e.g. /usr/local/bin/mailgw`);
    // A line break would end ExecStart= and start a directive of the caller's choosing in the unit.
    if (/[\x00-\x1f\x7f]/.test(override)) throw new CliError(`--exec-path ${JSON.stringify(override)} contains a control character (a line break would add lines to the unit): give a plain path`);
    return { exec: [override] };
  }
  if (isCompiled(mainPath)) return { exec: [execPath] };
  return {
    // Without the flag Bun would load a .env in the working directory over the EnvironmentFile.
    exec: [execPath, NO_ENV_FILE_FLAG, mainPath],
    warning:
      `running from source: the unit starts ${execPath} ${mainPath}; for production run \`npm run build\`, ` +
      `copy dist/mailgw to /usr/local/bin and run \`/usr/local/bin/mailgw systemd install\` (ProtectHome=yes hides /home and /root from the service)`,
  };
}

/** Directories the unit's ProtectHome=yes and PrivateTmp=yes hide from (or empty for) the service. */
const HIDDEN_FROM_SERVICE = ["/home/", "/root/", "/run/user/", "/tmp/", "/var/tmp/"];

/** Why the service could not start `exec` (a file in a directory it cannot see), or null. */
export function hiddenExecReason(exec: readonly string[]): string | null {
  const hidden = exec.find((p) => HIDDEN_FROM_SERVICE.some((dir) => p.startsWith(dir)));
  if (hidden === undefined) return null;
  return (
    `the service could not start ${hidden}: its ProtectHome=yes and PrivateTmp=yes hide /home, /root, /run/user, /tmp and /var/tmp from it; ` +
    `copy the executable out (sudo install -m 755 ${hidden} /usr/local/bin/mailgw) and run /usr/local/bin/mailgw systemd install, or pass --exec-path`
  );
}

/** Default systemctl runner; a missing binary is reported, not thrown. */
export const runSystemctl: RunSystemctl = (args) => {
  try {
    const proc = Bun.spawnSync(["systemctl", ...args], { stdout: "pipe", stderr: "pipe" });
    const out = (proc.stderr.toString() || proc.stdout.toString()).trim();
    return { ok: proc.exitCode === 0, detail: out || `exit ${proc.exitCode}` };
  } catch (err) {
    return { ok: false, detail: describeError(err) };
  }
};

/**
 * `--root DIR` as given → the root to write below, or null for the live system. An empty value
 * is refused rather than read as "": join("", "/etc/…") is the live /etc, so a packaging script
 * passing `--root "$pkgdir"` with the variable unset would install onto the build machine
 * past the live system's checks. `--root /` is the live system, with its checks.
 */
export function rootOption(raw: unknown): string | null {
  if (raw === undefined) return null;
  // citty gives "" (or true) for a bare `--root`.
  if (typeof raw !== "string" || raw.trim() === "") {
    throw new CliError("--root needs a directory (it was given an empty value); leave --root out to act on this system");
  }
  const root = resolve(raw);
  return root === "/" ? null : root;
}

function requireRoot(opts: SystemdOptions, verb: string): void {
  if (opts.root === null && opts.uid !== 0) {
    throw new CliError(
      `systemd ${verb} needs root (it writes ${UNIT_PATH} and ${CONFIG_DIR}): run it with sudo, or pass --root DIR to write the files below DIR`,
    );
  }
}

function target(opts: SystemdOptions, path: string): string {
  return opts.root === null ? path : join(opts.root, path);
}

/** Directories install creates (/etc/mailgw): the service's user must be able to enter them. */
const DIR_MODE = 0o755;

/**
 * Creates `dir` and its missing parents as 0755, whatever the umask. Under an administrator's
 * umask 027 or 077 (CIS-hardened hosts; sudo keeps the caller's umask) mkdir's mode was cut to
 * 0750/0700 root:root, and the service's own user could not reach /etc/mailgw/rules.yaml: serve
 * refused to start. A directory that already exists keeps its mode and owner (the operator's).
 */
function makeDirs(dir: string): void {
  const first = mkdirSync(dir, { recursive: true });
  if (first === undefined) return;
  for (let d = dir; ; d = dirname(d)) {
    chmodSync(d, DIR_MODE);
    if (d === first || d === dirname(d)) break;
  }
}

function writeAtomic(path: string, text: string, mode: number): void {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    makeDirs(dirname(path));
    rmSync(tmp, { force: true });
    // "wx": never through a file or symlink left at the temporary name.
    const fd = openSync(tmp, "wx", mode);
    try {
      writeFileSync(fd, text);
      // open(2)'s mode is cut by the umask: the rules file must stay readable by the service's user.
      fchmodSync(fd, mode);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    removeLeftover(tmp);
    throw new CliError(`cannot write ${path}: ${describeError(err)}`);
  }
}

/**
 * Best effort: when the directory could not be made (/etc/mailgw is a file), removing the
 * temporary file fails too (ENOTDIR; Bun says EFAULT), and that error replaced the one naming
 * what is wrong: "EFAULT: bad address in system call argument, rm '…/mailgw.env.tmp-123'".
 */
function removeLeftover(tmp: string): void {
  try {
    rmSync(tmp, { force: true });
  } catch {
    // Nothing was created there, or it cannot be reached: the caller reports the first error.
  }
}

function parsePort(name: string, value: string, source: string): number {
  if (!/^\d{1,5}$/.test(value) || Number(value) > 65535) {
    throw new CliError(`${name}=${value} (${source}) is not a port number between 0 and 65535`);
  }
  return Number(value);
}

/** Settings the service will run with: the existing env file wins over the install-time values. */
/** `systemdWarnings`: lines of the existing env file systemd reads otherwise than mailgw (env-file-check.ts). */
function serviceSettings(
  opts: SystemdOptions,
  envFile: string,
): { values: Map<string, string>; source: string; exists: boolean; setInFile: Set<string>; systemdWarnings: string[] } {
  if (existsSync(envFile)) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(envFile);
    } catch (err) {
      // install creates it 0600: `--print` as a normal user lands here.
      throw new CliError(`cannot read ${envFile} (${describeError(err)}): the unit depends on its ports; run this with sudo`);
    }
    const text = decodeEnvFile(bytes, envFile);
    const fromFile = parseDotenv(text, envFile);
    const values = new Map<string, string>();
    for (const v of VARIABLES) values.set(v.name, fromFile.get(v.name) ?? SERVICE_PATH_SETTINGS.get(v.name) ?? v.default);
    return { values, source: envFile, exists: true, setInFile: new Set(fromFile.keys()), systemdWarnings: systemdReadingWarnings(bytes, text, envFile) };
  }
  const values = new Map<string, string>();
  for (const v of VARIABLES) values.set(v.name, SERVICE_PATH_SETTINGS.get(v.name) ?? opts.settings.get(v.name) ?? v.default);
  return { values, source: "environment", exists: false, setInFile: new Set(), systemdWarnings: [] };
}

/** Lines the new env file sets: the service paths, and ports that differ from the defaults. */
function activeTemplateValues(values: ReadonlyMap<string, string>): Map<string, string> {
  const active = new Map(SERVICE_PATH_SETTINGS);
  for (const v of VARIABLES) {
    const value = values.get(v.name);
    if ((v.name === "SMTP_PORT" || v.name === "HTTP_PORT") && value !== undefined && value !== v.default) active.set(v.name, value);
  }
  return active;
}

/**
 * Directories the service writes outside the state directory: DATA_DIR and the database's
 * directory when configured elsewhere (read as serve reads them: the unit's WorkingDirectory is
 * STATE_DIR; a DATABASE_URL serve would refuse is serve's to name).
 */
function outsideDirs(values: ReadonlyMap<string, string>): { setting: string; dir: string }[] {
  let dbPath = "";
  try {
    dbPath = databasePath(STATE_DIR, values.get("DATABASE_URL") ?? "");
  } catch {
    // left out
  }
  const found = new Map<string, string>();
  for (const [setting, dir] of [["DATA_DIR", values.get("DATA_DIR") ?? ""], ["DATABASE_URL", isAbsolute(dbPath) ? dirname(dbPath) : ""]] as const) {
    if (isAbsolute(dir) && dir !== STATE_DIR && !dir.startsWith(`${STATE_DIR}/`) && !found.has(dir)) found.set(dir, setting);
  }
  return [...found].map(([dir, setting]) => ({ setting, dir }));
}

/**
 * ReadWritePaths: the state directory (exists: systemd creates it before the namespace), plus the
 * outside directories, prefixed "-" so a missing one lets the service start and mailgw itself
 * report the bad path.
 */
function writableDirs(values: ReadonlyMap<string, string>): string[] {
  return [STATE_DIR, ...outsideDirs(values).map((o) => `-${o.dir}`)];
}

/**
 * An outside directory that does not exist yet: the service cannot create it (ProtectSystem=strict
 * leaves its parent read-only), so serve would stop at start with EROFS, install after install.
 */
function missingOutsideDirWarnings(opts: SystemdOptions, values: ReadonlyMap<string, string>): string[] {
  return outsideDirs(values)
    .filter((o) => !existsSync(target(opts, o.dir)))
    .map(
      (o) =>
        `${o.dir} (${o.setting}) does not exist, and the service cannot create it (ProtectSystem=strict): create it for the service's user before starting, ` +
        `with the mailgw system user (README "TLS certificates": useradd --system ... mailgw) and sudo install -d -m 0750 -o mailgw -g mailgw ${o.dir}`,
    );
}

/** The unit text for the settings the service will run with. */
export function planUnit(opts: SystemdOptions): { unit: string; env: ReturnType<typeof serviceSettings> } {
  const env = serviceSettings(opts, target(opts, ENV_FILE_PATH));
  const get = (n: string): string => env.values.get(n) ?? "";
  // Without an env file the values come from the flags or the environment: name the one typed.
  const source = (name: string): string => (!env.exists && opts.portFlags?.has(name) ? (name === "SMTP_PORT" ? "--smtp-port" : "--http-port") : env.source);
  const smtpPort = parsePort("SMTP_PORT", get("SMTP_PORT"), source("SMTP_PORT"));
  const httpPort = parsePort("HTTP_PORT", get("HTTP_PORT"), source("HTTP_PORT"));
  if (smtpPort !== 0 && smtpPort === httpPort && listenAddressesOverlap(get("SMTP_HOST"), get("HTTP_HOST"))) {
    // serve would refuse to start (config.ts): a unit that can never run is not written.
    throw new CliError(`SMTP_PORT and HTTP_PORT are both ${smtpPort} (${source("SMTP_PORT")}, ${source("HTTP_PORT")}): give the stats/health HTTP server another port`);
  }
  const unit = renderUnit({
    exec: opts.exec,
    smtpPort,
    httpPort,
    writablePaths: writableDirs(env.values),
    version: opts.version,
  });
  return { unit, env };
}

export function installSystemd(opts: SystemdOptions): SystemdReport {
  requireRoot(opts, "install");
  const report: SystemdReport = { written: [], kept: [], removed: [], warnings: [], nextSteps: [] };
  const hidden = hiddenExecReason(opts.exec);
  if (hidden !== null) {
    // On the live system the unit would fail with 203/EXEC; below --root (packaging) it is a note.
    if (opts.root === null) throw new CliError(hidden);
    report.warnings.push(hidden);
  }
  const { unit, env } = planUnit(opts);
  if (env.exists) refuseIgnoredPortFlags(opts, env);
  report.warnings.push(...missingOutsideDirWarnings(opts, env.values));
  const unitPath = target(opts, UNIT_PATH);
  writeAtomic(unitPath, unit, 0o644);
  report.written.push(unitPath);

  const envPath = target(opts, ENV_FILE_PATH);
  if (env.exists) {
    report.kept.push(envPath);
    report.warnings.push(...envFileModeWarning(envPath), ...env.systemdWarnings);
  } else {
    writeAtomic(envPath, renderEnvTemplate(activeTemplateValues(env.values), opts.version), 0o600);
    report.written.push(envPath);
  }
  const rulesPath = target(opts, RULES_PATH);
  if (existsSync(rulesPath)) report.kept.push(rulesPath);
  else {
    writeAtomic(rulesPath, STARTER_RULES_YAML, 0o644);
    report.written.push(rulesPath);
  }

  if (opts.root === null) {
    const reload = opts.runSystemctl(["daemon-reload"]);
    if (!reload.ok) report.warnings.push(`systemctl daemon-reload failed (${reload.detail}); run it yourself once systemd is running`);
  }
  report.nextSteps.push(
    `edit ${ENV_FILE_PATH} (relay, TLS, hostname) and ${RULES_PATH} (your domains)`,
    `mailgw rules lint ${RULES_PATH}`,
    "systemctl enable --now mailgw && systemctl status mailgw",
  );
  return report;
}

/**
 * The env file holds the relay password and STATS_TOKEN; systemd reads it as root, so nobody else
 * needs to. One the operator created before install (an editor's 0644) was kept as it was, silently.
 */
function envFileModeWarning(path: string): string[] {
  let mode: number;
  try {
    mode = statSync(path).mode & 0o777;
  } catch {
    return [];
  }
  if ((mode & 0o077) === 0) return [];
  const octal = mode.toString(8).padStart(4, "0");
  return [`${path} is mode ${octal}: users other than its owner can read the secrets it may hold (RELAY_SMTP_PASS, STATS_TOKEN, WEBHOOK_SECRET); sudo chmod 600 ${path}`];
}

/** An existing env file is never rewritten: a port flag that says otherwise would be ignored silently. */
function refuseIgnoredPortFlags(opts: SystemdOptions, env: ReturnType<typeof serviceSettings>): void {
  for (const [name, value] of opts.portFlags ?? []) {
    const current = env.values.get(name);
    if (current === value) continue;
    const flag = name === "SMTP_PORT" ? "--smtp-port" : "--http-port";
    // A commented-out line (the template's `#SMTP_PORT=2525`) sets nothing: the default applies.
    const what = env.setInFile.has(name) ? `sets ${name}=${current}` : `does not set ${name} (so the default ${current} applies)`;
    throw new CliError(
      `${flag} ${value} would be ignored: ${env.source} exists and ${what} (install never rewrites it); ` +
        `set ${name}=${value} there, then run install again`,
    );
  }
}

/** Where systemd keeps the state of a DynamicUser service (STATE_DIR is then a link to it). */
const PRIVATE_STATE_DIR = "/var/lib/private/mailgw";

export function uninstallSystemd(opts: SystemdOptions): SystemdReport {
  requireRoot(opts, "uninstall");
  const report: SystemdReport = { written: [], kept: [], removed: [], warnings: [], nextSteps: [] };
  const unitPath = target(opts, UNIT_PATH);
  if (opts.root === null) {
    const stop = opts.runSystemctl(["disable", "--now", "mailgw.service"]);
    if (!stop.ok) report.warnings.push(`systemctl disable --now mailgw failed (${stop.detail})`);
  }
  if (existsSync(unitPath)) {
    try {
      rmSync(unitPath);
    } catch (err) {
      throw new CliError(`cannot remove ${unitPath}: ${describeError(err)}`);
    }
    report.removed.push(unitPath);
  } else report.warnings.push(`${unitPath} does not exist: nothing to remove`);
  if (opts.root === null) {
    const reload = opts.runSystemctl(["daemon-reload"]);
    if (!reload.ok) report.warnings.push(`systemctl daemon-reload failed (${reload.detail})`);
  }
  // With DynamicUser the state lives in /var/lib/private/mailgw (/var/lib/mailgw links to it).
  for (const dir of [CONFIG_DIR, STATE_DIR, PRIVATE_STATE_DIR]) if (existsSync(target(opts, dir))) report.kept.push(target(opts, dir));
  report.nextSteps.push(`settings and data are kept; delete ${CONFIG_DIR} and /var/lib/mailgw (or /var/lib/private/mailgw) yourself if you no longer need them`);
  return report;
}
