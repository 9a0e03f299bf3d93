/**
 * Config: the one module that reads the environment (SPEC §2).
 *
 * Precedence: flags > process environment > `.env` in the working directory > defaults.
 * Everything is validated here, once, into a typed object; a bad value throws a CliError
 * whose single line names the variable, what was wrong and what is accepted. Paths are
 * resolved against the working directory so the rest of the program never sees a relative
 * path. Nothing else in mailgw reads `process.env`.
 */
import { existsSync, readFileSync } from "node:fs";
import { hostname } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { CliError } from "../errors.ts";
import { RETRY_CAP_MS } from "../queue/retry.ts";
import { VARIABLES, VARIABLE_NAMES } from "./variables.ts";
import { decodeEnvFile, hostBitWarnings, parseCidrList, parseDotenv } from "./parse-values.ts";
import { bool, hostName, integer, listenAddressesOverlap, listenHost, number, oneOf, relayHost, withoutLogin } from "./scalar-values.ts";
import { inlineCommentWarnings } from "./inline-comments.ts";
import { unknownVariableWarnings } from "./unknown-variables.ts";

export type RelaySecurity = "starttls" | "tls" | "none";
export type LogFormat = "text" | "json";
export type LogLevel = "debug" | "info" | "warn" | "error";

export interface TlsConfig {
  enabled: boolean;
  keyPath: string | null;
  certPath: string | null;
  required: boolean;
}

export interface RelayConfig {
  host: string;
  port: number;
  user: string | null;
  pass: string | null;
  secure: RelaySecurity;
  tlsVerify: boolean;
}

export interface Config {
  cwd: string;
  smtp: {
    host: string;
    port: number;
    hostname: string;
    allowedIps: string[];
    proxyProtocol: boolean;
    proxyTrusted: string[];
    tls: TlsConfig;
    maxMessageBytes: number;
    rateLimit: { max: number; windowMs: number };
  };
  /** null: no relay configured → forwards are held (SPEC §2). */
  relay: RelayConfig | null;
  databasePath: string;
  dataDir: string;
  archiveMaxAgeDays: number;
  rulesFile: string;
  http: { host: string; port: number; statsToken: string | null };
  /**
   * `journalStream`: systemd's JOURNAL_STREAM (`dev:inode` of the journal stream it gave the
   * service as stdout or stderr), from the process environment; null when not set.
   */
  log: { level: LogLevel; format: LogFormat; journalStream: string | null };
  queue: { maxAgeHours: number; retryBaseSeconds: number };
  webhookSecret: string | null;
  /** Settings that were ignored (unknown names, e.g. a typo); `serve` logs them at start. */
  warnings: string[];
}

export interface LoadOptions {
  /** Overrides from command-line flags, keyed by variable name. */
  flags?: Partial<Record<string, string | undefined>>;
  /** Defaults to process.env. */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Path of the .env file; default `<cwd>/.env` (missing is fine); null: none is read. */
  envFile?: string | null;
  /** Whether stdout is a TTY (for the LOG_FORMAT default). */
  isTty?: boolean;
  /** The command-line spelling of `flags` (SMTP_PORT → --port), for errors about a flag's value. */
  flagNames?: Partial<Record<string, string>>;
}

/** The database's file name in DATA_DIR when DATABASE_URL is not set. */
export const DEFAULT_DATABASE_FILE = "mail-gateway.db";

/** The env file's text; a directory or an unreadable file is named with the reason. */
function readEnvFile(path: string): string {
  try {
    return decodeEnvFile(readFileSync(path), path);
  } catch (err) {
    if (err instanceof CliError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "EISDIR" ? "it is a directory" : code === "EACCES" ? "permission denied" : String((err as Error).message);
    throw new CliError(`cannot read env file ${path}: ${why}`);
  }
}

/** SPEC's (planned) variables: set, they would let an admin believe a rewrite happens. */
const PLANNED_WARNINGS: Record<string, string> = {
  FORWARD_FROM: "FORWARD_FROM is set, but it is planned, not implemented yet: forwarded copies keep their original From:",
  SRS_DOMAIN: "SRS_DOMAIN is set, but SRS is planned, not implemented yet: forwarded mail keeps its original envelope sender",
  SRS_SECRET: "SRS_SECRET is set, but SRS is planned, not implemented yet: forwarded mail keeps its original envelope sender",
};

/** Raw string value of each variable after applying precedence. */
export function resolveRawValues(opts: LoadOptions = {}): Map<string, string> {
  return resolveSettings(opts).raw;
}

/** The raw values, and which variables were given (flag, environment or .env), not defaulted. */
/** Credentials whose value could carry quotes by mistake (a wrong one only shows as a refused login later). */
const QUOTABLE_SECRETS = ["RELAY_SMTP_USER", "RELAY_SMTP_PASS", "STATS_TOKEN", "WEBHOOK_SECRET"] as const;

/**
 * One env file serves systemd's EnvironmentFile (which strips quotes) and `docker --env-file`
 * (which keeps them): a quoted password then reaches mailgw with its quotes under Docker, and
 * the relay's login, the stats token or the webhook signatures fail with no clue. Said at start,
 * by name only (never the value).
 */
function quotedSecretWarnings(raw: ReadonlyMap<string, string>): string[] {
  return QUOTABLE_SECRETS.filter((name) => /^(["']).*\1$/s.test(raw.get(name) ?? "")).map(
    (name) => `${name} starts and ends with a quote, kept as part of the value (docker --env-file keeps quotes; systemd and .env drop them): remove them if they are not part of it`,
  );
}

/** `fromEnvironment`: the variables whose value came from the process environment (not a flag, not the env file). */
interface Settings {
  raw: Map<string, string>;
  given: Set<string>;
  fromEnvironment: Set<string>;
  warnings: string[];
}

function resolveSettings(opts: LoadOptions): Settings {
  const cwd = opts.cwd ?? process.cwd();
  const env = opts.env ?? process.env;
  const envFile = opts.envFile === null ? null : (opts.envFile ?? resolve(cwd, ".env"));
  const dotenv = envFile !== null && existsSync(envFile) ? parseDotenv(readEnvFile(envFile), envFile) : new Map<string, string>();
  for (const key of Object.keys(opts.flags ?? {})) {
    if (!VARIABLE_NAMES.has(key)) throw new CliError(`unknown configuration variable ${key}`);
  }
  const raw = new Map<string, string>();
  const given = new Set<string>();
  const fromEnvironment = new Set<string>();
  for (const v of VARIABLES) {
    const value = opts.flags?.[v.name] ?? env[v.name] ?? dotenv.get(v.name);
    if (value !== undefined) given.add(v.name);
    if (opts.flags?.[v.name] === undefined && env[v.name] !== undefined) fromEnvironment.add(v.name);
    raw.set(v.name, (value ?? v.default).trim());
  }
  const warnings = unknownVariableWarnings(env, envFile !== null && dotenv.size > 0 ? { path: envFile, keys: dotenv.keys() } : null);
  for (const v of VARIABLES) if (v.planned && raw.get(v.name)) warnings.push(PLANNED_WARNINGS[v.name] ?? `${v.name} is set, but it is planned, not implemented yet: it has no effect`);
  warnings.push(...quotedSecretWarnings(raw));
  return { raw, given, fromEnvironment, warnings };
}

/** Where the spool, archive and database are: DATA_DIR and DATABASE_URL, nothing else read. */
export interface StoragePaths {
  dataDir: string;
  databasePath: string;
}

function storage(cwd: string, get: (n: string) => string, given: ReadonlySet<string>): StoragePaths {
  const dataDir = resolvePath(cwd, get("DATA_DIR"), "DATA_DIR");
  // Unset, the database goes with DATA_DIR (the defaults agree: ./data/mail-gateway.db), so
  // `--data-dir` alone moves everything, and `mailgw queue --data-dir` finds it.
  const db = given.has("DATABASE_URL") ? databasePath(cwd, get("DATABASE_URL")) : join(dataDir, DEFAULT_DATABASE_FILE);
  return { dataDir, databasePath: db };
}

/**
 * The storage paths alone, for `mailgw queue`: an admin must be able to look at the queue
 * while another setting is wrong (a bad RELAY_SMTP_SECURE that a reload refused, say), which
 * is exactly when it is needed.
 */
export function loadStoragePaths(opts: LoadOptions = {}): StoragePaths {
  const { raw, given, fromEnvironment } = resolveSettings(opts);
  inlineCommentWarnings(["DATA_DIR", "DATABASE_URL"], raw, fromEnvironment);
  return storage(opts.cwd ?? process.cwd(), (name) => raw.get(name) ?? "", given);
}

/**
 * A bad value that came from a flag is named as the flag the user typed (`--port abc`), not
 * only as the variable it sets: "SMTP_PORT=abc" sent the admin looking through .env.
 */
export function loadConfig(opts: LoadOptions = {}): Config {
  try {
    return loadConfigValues(opts);
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    for (const [name, flag] of Object.entries(opts.flagNames ?? {})) {
      const value = opts.flags?.[name];
      if (flag === undefined || value === undefined || !err.message.startsWith(`${name}=${value.trim()} `)) continue;
      throw new CliError(`${flag} ${value.trim()} (${name})${err.message.slice(`${name}=${value.trim()}`.length)}`, err.exitCode);
    }
    throw err;
  }
}

/**
 * HTTP_HOST and HTTP_PORT alone, for `mailgw healthcheck`: a typo in another variable (which the
 * next start of serve will refuse) must not make a running, healthy gateway report unhealthy.
 */
export function loadHttpAddress(opts: LoadOptions = {}): { host: string; port: number } {
  const { raw, fromEnvironment } = resolveSettings(opts);
  inlineCommentWarnings(["HTTP_HOST", "HTTP_PORT"], raw, fromEnvironment);
  const get = (name: string): string => raw.get(name) ?? "";
  return { host: listenHost(get, "HTTP_HOST"), port: integer(get, "HTTP_PORT", 0, 65535) };
}

/** Both listeners on one port would fail at bind time with a message about HTTP alone. */
function refuseSharedPort(smtp: { host: string; port: number }, http: { host: string; port: number }): void {
  if (smtp.port === 0 || smtp.port !== http.port || !listenAddressesOverlap(smtp.host, http.host)) return;
  throw new CliError(`SMTP_PORT and HTTP_PORT are both ${smtp.port} (on ${smtp.host} and ${http.host}): give the stats/health HTTP server another port (HTTP_PORT, default 3000)`);
}

function loadConfigValues(opts: LoadOptions): Config {
  const cwd = opts.cwd ?? process.cwd();
  const { raw, given, fromEnvironment, warnings } = resolveSettings(opts);
  // Before the values are checked: "SMTP_PORT=25 # smtp is not an integer" did not say why.
  warnings.push(...inlineCommentWarnings(VARIABLE_NAMES, raw, fromEnvironment));
  const get = (name: string): string => raw.get(name) ?? "";
  const path = (name: string): string => resolvePath(cwd, get(name), name);
  const keyPath = get("SMTP_TLS_KEY") ? path("SMTP_TLS_KEY") : null;
  const certPath = get("SMTP_TLS_CERT") ? path("SMTP_TLS_CERT") : null;
  const tlsEnabled = get("SMTP_TLS_ENABLED") === "" ? keyPath !== null && certPath !== null : bool(get, "SMTP_TLS_ENABLED");
  if (get("SMTP_TLS_ENABLED") === "" && (keyPath === null) !== (certPath === null)) {
    // One of the pair set (the other forgotten or misspelt, e.g. SMTP_TLS_CRT) would silently
    // start a public MX without STARTTLS; SMTP_TLS_ENABLED=false says that is what is wanted.
    const [set, unset] = keyPath !== null ? ["SMTP_TLS_KEY", "SMTP_TLS_CERT"] : ["SMTP_TLS_CERT", "SMTP_TLS_KEY"];
    throw new CliError(`${set} is set but ${unset} is not: set both to offer STARTTLS (or SMTP_TLS_ENABLED=false to run without it)`);
  }
  if (tlsEnabled && (!keyPath || !certPath)) {
    throw new CliError(`SMTP_TLS_ENABLED=${get("SMTP_TLS_ENABLED")} needs SMTP_TLS_KEY and SMTP_TLS_CERT (PEM file paths)`);
  }
  const tlsRequired = bool(get, "SMTP_TLS_REQUIRED");
  if (tlsRequired && !tlsEnabled) {
    // Without STARTTLS on offer, every MAIL would get 530: a gateway that takes no mail at all.
    throw new CliError(`SMTP_TLS_REQUIRED=${get("SMTP_TLS_REQUIRED")} needs STARTTLS: set SMTP_TLS_KEY and SMTP_TLS_CERT (and do not set SMTP_TLS_ENABLED=false)`);
  }
  const maxMb = number(get, "MAX_MESSAGE_SIZE_MB", 0.001, 1024);
  const config: Config = {
    cwd,
    smtp: {
      host: listenHost(get, "SMTP_HOST"),
      port: integer(get, "SMTP_PORT", 0, 65535),
      hostname: get("SMTP_HOSTNAME") ? hostName(get, "SMTP_HOSTNAME") : hostname(),
      allowedIps: parseCidrList(get("SMTP_ALLOWED_IPS"), "SMTP_ALLOWED_IPS"),
      proxyProtocol: bool(get, "SMTP_PROXY_PROTOCOL"),
      proxyTrusted: parseCidrList(get("SMTP_PROXY_TRUSTED"), "SMTP_PROXY_TRUSTED"),
      tls: { enabled: tlsEnabled, keyPath, certPath, required: tlsRequired },
      maxMessageBytes: Math.floor(maxMb * 1024 * 1024),
      rateLimit: { max: integer(get, "RATE_LIMIT_MAX", 1, 1e9), windowMs: integer(get, "RATE_LIMIT_WINDOW_MS", 1, 864e5 * 365) },
    },
    relay: relayConfig(get),
    ...storage(cwd, get, given),
    archiveMaxAgeDays: number(get, "ARCHIVE_MAX_AGE_DAYS", 0, 1e6),
    rulesFile: path("RULES_FILE"),
    http: {
      host: listenHost(get, "HTTP_HOST"),
      port: integer(get, "HTTP_PORT", 0, 65535),
      statsToken: statsToken(get),
    },
    log: {
      level: oneOf(get, "LOG_LEVEL", ["debug", "info", "warn", "error"] as const),
      format: logFormat(get, opts.isTty),
      journalStream: journalStream(opts.env),
    },
    queue: {
      maxAgeHours: number(get, "QUEUE_MAX_AGE_HOURS", 0.001, 1e6),
      retryBaseSeconds: number(get, "QUEUE_RETRY_BASE_SECONDS", 0.001, 86400),
    },
    webhookSecret: get("WEBHOOK_SECRET") || null,
    warnings,
  };
  refuseSharedPort(config.smtp, config.http);
  warnings.push(...hostBitWarnings(config.smtp.allowedIps, "SMTP_ALLOWED_IPS"), ...hostBitWarnings(config.smtp.proxyTrusted, "SMTP_PROXY_TRUSTED"));
  const token = config.http.statsToken;
  if (token !== null && token.length < MIN_STATS_TOKEN_CHARS) {
    // Not a lock after wrong guesses: that locked out every scraper sharing the guesser's address.
    warnings.push(`STATS_TOKEN has ${token.length} characters: a client can try tens of thousands a second, so a short one is guessed in minutes; use at least ${MIN_STATS_TOKEN_CHARS} random ones (openssl rand -hex 32)`);
  }
  if (config.queue.retryBaseSeconds > RETRY_CAP_MS / 1000) {
    warnings.push(`QUEUE_RETRY_BASE_SECONDS=${get("QUEUE_RETRY_BASE_SECONDS")} is above the ${RETRY_CAP_MS / 1000} s cap on every retry delay: retries wait ${RETRY_CAP_MS / 1000} s`);
  }
  return config;
}

/** Shorter tokens are warned about at start: guessed at ~50,000 tries a second (measured on loopback). */
const MIN_STATS_TOKEN_CHARS = 16;

/**
 * A client presents the token as `Authorization: Bearer TOKEN`: a space, a control character
 * or a non-ASCII one could never arrive intact, so every scrape would get 401. The value is a
 * secret: the message does not repeat it.
 */
function statsToken(get: (n: string) => string): string | null {
  const v = get("STATS_TOKEN");
  if (!v) return null;
  if (!/^[\x21-\x7e]+$/.test(v)) {
    throw new CliError(`STATS_TOKEN has a space or a character that is not printable ASCII, so no client could send it as "Authorization: Bearer TOKEN": use letters, digits and punctuation only (e.g. the output of openssl rand -hex 32)`);
  }
  return v;
}

function relayConfig(get: (n: string) => string): RelayConfig | null {
  const secure = oneOf(get, "RELAY_SMTP_SECURE", ["starttls", "tls", "none"] as const);
  const port = integer(get, "RELAY_SMTP_PORT", 1, 65535);
  const tlsVerify = bool(get, "RELAY_SMTP_TLS_VERIFY");
  const host = relayHost(get("RELAY_SMTP_HOST"), port);
  if (!host) return null;
  const user = get("RELAY_SMTP_USER") || null;
  const pass = get("RELAY_SMTP_PASS") || null;
  if ((user === null) !== (pass === null)) {
    throw new CliError(`RELAY_SMTP_USER and RELAY_SMTP_PASS must be set together (one of them is empty)`);
  }
  return { host, port, user, pass, secure, tlsVerify };
}

function logFormat(get: (n: string) => string, isTty = Boolean(process.stdout.isTTY)): LogFormat {
  if (get("LOG_FORMAT") === "") return isTty ? "text" : "json";
  return oneOf(get, "LOG_FORMAT", ["text", "json"] as const);
}

/**
 * DATABASE_URL: file:PATH (RFC 8089: file:///abs, file://localhost/abs), sqlite:PATH (sqlite://
 * then a path, as sqlx writes it), or a bare path. What SQLite URIs add (?mode=rwc, #…) and a
 * file URL's host are refused: taken as part of the path, they opened a new, empty database
 * beside the real one, and the queue's spool files were then moved aside as having no record.
 */
export function databasePath(cwd: string, url: string): string {
  if (!url) throw new CliError(`DATABASE_URL is empty: expected file:PATH (e.g. file:./data/mail-gateway.db)`);
  const scheme = /^(?:sqlite|file):/.exec(url)?.[0] ?? "";
  let p = url.slice(scheme.length);
  if (!p || /^[a-z][a-z0-9+.-]*:/i.test(p)) {
    throw new CliError(`DATABASE_URL=${withoutLogin(url)} is not a SQLite file URL: expected file:PATH (e.g. file:./data/mail-gateway.db)`);
  }
  if (scheme !== "") {
    const cut = p.search(/[?#]/);
    if (cut !== -1) {
      const rest = p.slice(cut);
      const plain = url.slice(0, scheme.length + cut);
      throw new CliError(
        rest.startsWith("?")
          ? `DATABASE_URL=${url} has a query string (${rest}): mailgw opens the file itself and takes no parameters; write ${plain}`
          : `DATABASE_URL=${url} has a fragment (${rest}): write ${plain}`,
      );
    }
    const host = scheme === "file:" ? /^\/\/([^/]*)/.exec(p)?.[1] : undefined;
    if (host !== undefined && host !== "" && host.toLowerCase() !== "localhost") {
      const path = p.slice(2);
      throw new CliError(
        `DATABASE_URL=${url} names a host (${host}): write file:///${path} or file:/${path} for an absolute path, file:./${path} for one under the working directory`,
      );
    }
    p = host !== undefined ? p.slice(2 + host.length) : p.replace(/^\/\//, "");
  }
  return isAbsolute(p) ? p : resolve(cwd, p);
}

function resolvePath(cwd: string, value: string, name: string): string {
  if (!value) throw new CliError(`${name} is empty: expected a path`);
  return isAbsolute(value) ? value : resolve(cwd, value);
}

/** A copy of the config safe to log or show: secrets replaced. */
export function redactedConfig(config: Config): Config {
  return {
    ...config,
    relay: config.relay ? { ...config.relay, pass: config.relay.pass ? "***" : null } : null,
    http: { ...config.http, statsToken: config.http.statsToken ? "***" : null },
    webhookSecret: config.webhookSecret ? "***" : null,
  };
}

/** systemd's JOURNAL_STREAM (`dev:inode`), null when not set; the CLI error path reads it too. */
export function journalStream(env: NodeJS.ProcessEnv = process.env): string | null {
  return env.JOURNAL_STREAM?.trim() || null;
}

/**
 * Whether errors should show stack traces (LOG_LEVEL=debug from flags, env or .env). Used by
 * the CLI error path, so it must not throw even when the rest of the config is invalid.
 */
export function debugRequested(opts: LoadOptions = {}): boolean {
  try {
    return resolveRawValues(opts).get("LOG_LEVEL")?.toLowerCase() === "debug";
  } catch {
    return (opts.env ?? process.env).LOG_LEVEL === "debug";
  }
}
