/**
 * Which settings a SIGHUP does not apply: it reloads the rules, the TLS files and RELAY_*; every
 * other variable is read at start only. An admin who edits WEBHOOK_SECRET in `.env` and sends
 * SIGHUP is told, by name, that it waits for a restart, instead of finding out from the posts
 * still signed with the old secret. Names only: values may be secrets.
 */
import type { Config } from "./config.ts";

const RESTART_ONLY: readonly [string, (c: Config) => unknown][] = [
  ["SMTP_HOST", (c) => c.smtp.host],
  ["SMTP_PORT", (c) => c.smtp.port],
  ["SMTP_HOSTNAME", (c) => c.smtp.hostname],
  ["SMTP_ALLOWED_IPS", (c) => c.smtp.allowedIps],
  ["SMTP_PROXY_PROTOCOL", (c) => c.smtp.proxyProtocol],
  ["SMTP_PROXY_TRUSTED", (c) => c.smtp.proxyTrusted],
  ["SMTP_TLS_ENABLED", (c) => c.smtp.tls.enabled],
  ["SMTP_TLS_KEY", (c) => c.smtp.tls.keyPath],
  ["SMTP_TLS_CERT", (c) => c.smtp.tls.certPath],
  ["SMTP_TLS_REQUIRED", (c) => c.smtp.tls.required],
  ["MAX_MESSAGE_SIZE_MB", (c) => c.smtp.maxMessageBytes],
  ["RATE_LIMIT_MAX", (c) => c.smtp.rateLimit.max],
  ["RATE_LIMIT_WINDOW_MS", (c) => c.smtp.rateLimit.windowMs],
  ["DATABASE_URL", (c) => c.databasePath],
  ["DATA_DIR", (c) => c.dataDir],
  ["ARCHIVE_MAX_AGE_DAYS", (c) => c.archiveMaxAgeDays],
  ["RULES_FILE", (c) => c.rulesFile],
  ["HTTP_HOST", (c) => c.http.host],
  ["HTTP_PORT", (c) => c.http.port],
  ["STATS_TOKEN", (c) => c.http.statsToken],
  ["LOG_LEVEL", (c) => c.log.level],
  ["LOG_FORMAT", (c) => c.log.format],
  ["QUEUE_MAX_AGE_HOURS", (c) => c.queue.maxAgeHours],
  ["QUEUE_RETRY_BASE_SECONDS", (c) => c.queue.retryBaseSeconds],
  ["WEBHOOK_SECRET", (c) => c.webhookSecret],
];

/** Variables whose value in `next` differs from the running `current`, and that only a restart applies. */
export function changedUntilRestart(current: Config, next: Config): string[] {
  return RESTART_ONLY.filter(([, read]) => JSON.stringify(read(current)) !== JSON.stringify(read(next))).map(([name]) => name);
}
