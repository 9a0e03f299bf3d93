/**
 * Every configuration variable of SPEC §2 with its one default, in one place.
 * The env-file template (`mailgw systemd install`) and the docs are generated from this
 * list, so a variable added here shows up everywhere.
 */

export interface VariableSpec {
  name: string;
  /** Default as the user would write it; "" = unset. */
  default: string;
  /** One line for the env template and --help. */
  help: string;
  /** Never print the value (logs, stats page, errors). */
  secret?: boolean;
  /** Planned in SPEC: accepted and validated, not yet used. */
  planned?: boolean;
}

export const VARIABLES: readonly VariableSpec[] = [
  { name: "SMTP_HOST", default: "0.0.0.0", help: "SMTP listen address" },
  { name: "SMTP_PORT", default: "2525", help: "SMTP listen port" },
  { name: "SMTP_HOSTNAME", default: "", help: "name in banner, EHLO reply and Received header (default: machine hostname)" },
  { name: "SMTP_ALLOWED_IPS", default: "0.0.0.0/0,::/0", help: "comma-separated CIDRs allowed to connect; others get 554 5.7.1" },
  { name: "SMTP_PROXY_PROTOCOL", default: "false", help: "expect a PROXY protocol v1/v2 header from the load balancer" },
  { name: "SMTP_PROXY_TRUSTED", default: "127.0.0.0/8,::1/128", help: "CIDRs allowed to send a PROXY header" },
  { name: "SMTP_TLS_ENABLED", default: "", help: "offer STARTTLS (default: true when key and cert are set)" },
  { name: "SMTP_TLS_KEY", default: "", help: "PEM private key path (reloaded on SIGHUP and on change)" },
  { name: "SMTP_TLS_CERT", default: "", help: "PEM certificate chain path (reloaded on SIGHUP and on change)" },
  { name: "SMTP_TLS_REQUIRED", default: "false", help: "refuse MAIL (and RCPT, DATA, RSET, VRFY, HELP) before STARTTLS with 530 5.7.0, as RFC 3207 §4 and Postfix do (needs `SMTP_TLS_KEY` and `SMTP_TLS_CERT`: `serve` refuses to start without them)" },
  { name: "RELAY_SMTP_HOST", default: "", help: "relay for forward (e.g. smtp.mailgun.org); unset = forwards are held" },
  { name: "RELAY_SMTP_PORT", default: "587", help: "relay port" },
  { name: "RELAY_SMTP_USER", default: "", help: "relay SASL user" },
  { name: "RELAY_SMTP_PASS", default: "", help: "relay SASL password", secret: true },
  { name: "RELAY_SMTP_SECURE", default: "starttls", help: "starttls (587) | tls (465) | none (loopback/test only)" },
  { name: "RELAY_SMTP_TLS_VERIFY", default: "true", help: "verify the relay's certificate" },
  { name: "FORWARD_FROM", default: "", help: "(planned) From address for forwarded copies", planned: true },
  { name: "RATE_LIMIT_MAX", default: "200", help: "messages per client IP (IPv6: per /64) per window; over it → 451 4.7.1" },
  { name: "RATE_LIMIT_WINDOW_MS", default: "60000", help: "rate limit window in milliseconds" },
  { name: "MAX_MESSAGE_SIZE_MB", default: "25", help: "advertised SIZE; bigger → 552 5.3.4" },
  { name: "DATABASE_URL", default: "file:./data/mail-gateway.db", help: "SQLite file (WAL); when unset, mail-gateway.db in DATA_DIR" },
  { name: "DATA_DIR", default: "./data", help: "spool and archive directory" },
  { name: "ARCHIVE_MAX_AGE_DAYS", default: "0", help: "delete archived messages older than this, and the records of all messages that old (sender, recipients, subject; kept while a delivery still needs one); 0 keeps everything. The stats page's counters are kept" },
  { name: "RULES_FILE", default: "./rules.yaml", help: "rules file, hot-reloaded" },
  { name: "HTTP_HOST", default: "127.0.0.1", help: "stats/metrics/health listen address" },
  { name: "HTTP_PORT", default: "3000", help: "stats/metrics/health port" },
  { name: "STATS_TOKEN", default: "", help: "Bearer token for /stats, /stats.json, /metrics; printable ASCII without spaces (e.g. `openssl rand -hex 32`)", secret: true },
  { name: "LOG_LEVEL", default: "info", help: "debug | info | warn | error" },
  { name: "LOG_FORMAT", default: "", help: "text | json (default: text on a TTY, json otherwise)" },
  { name: "QUEUE_MAX_AGE_HOURS", default: "96", help: "give up a deferred delivery after this many hours (counted from its queueing, from its last `mailgw queue retry`, or — for a forward held without a relay — from the relay being set)" },
  { name: "QUEUE_RETRY_BASE_SECONDS", default: "60", help: "first retry delay; doubles per attempt, ±20% jitter, capped at 1 hour. Also how long a failing relay is first suspended (doubling per failed probe, capped at 1 hour)" },
  { name: "WEBHOOK_SECRET", default: "", help: "HMAC-SHA256 key for X-Mailgw-Signature on webhook posts", secret: true },
  { name: "SRS_DOMAIN", default: "", help: "(planned) SRS rewriting domain", planned: true },
  { name: "SRS_SECRET", default: "", help: "(planned) SRS secret", secret: true, planned: true },
];

export type VariableName = (typeof VARIABLES)[number]["name"];

export const VARIABLE_NAMES: ReadonlySet<string> = new Set(VARIABLES.map((v) => v.name));
