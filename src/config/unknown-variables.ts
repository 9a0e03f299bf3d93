/**
 * Warnings for settings mailgw does not know: a misspelt name (SMTP_TLS_CRT, RELAY_SMTP_PASSWORD)
 * is otherwise ignored without a word and its default silently applies, the way Postfix warns
 * about an unknown main.cf parameter instead of ignoring it.
 *
 * Every key of the env file is meant for mailgw, so each unknown one is reported. The process
 * environment also carries other programs' variables (HTTP_PROXY, LOG_DIR…): only a name that
 * uses one of mailgw's own prefixes or is one typo away from a known name is reported.
 * Trusts: nothing. Failure: none (warnings only; a bad value of a known variable is config.ts's).
 */
import { VARIABLE_NAMES } from "./variables.ts";

/** Prefixes only mailgw's variables use; a name with one of them is ours or a typo. */
const OWN_PREFIXES = ["SMTP_", "RELAY_", "QUEUE_", "WEBHOOK_", "RATE_LIMIT_", "ARCHIVE_", "STATS_", "SRS_", "FORWARD_FROM"];

/**
 * Variables the runtime or the C library read, which an env file may set on purpose (under
 * systemd or `docker --env-file` it becomes the process environment): not reported as unknown.
 * mailgw reads its env file itself and never copies it into the process environment, so one
 * that is ONLY in the env file has no effect (NODE_EXTRA_CA_CERTS for a webhook's private CA,
 * TZ): that is reported.
 */
const PROCESS_VARIABLES = /^(TZ|LANG|LANGUAGE|PATH|HOME|USER|TMPDIR|LC_\w+|NODE_\w+|BUN_\w+|UV_\w+|SSL_CERT_(FILE|DIR)|(HTTPS?|NO|ALL)_PROXY)$/i;

/** At most this many edits from a known name counts as a typo of it. */
const TYPO_DISTANCE = 2;

export function unknownVariableWarnings(env: Record<string, string | undefined>, envFile: { path: string; keys: Iterable<string> } | null): string[] {
  const warnings: string[] = [];
  if (envFile) {
    for (const key of envFile.keys) {
      if (VARIABLE_NAMES.has(key)) continue;
      if (!PROCESS_VARIABLES.test(key)) warnings.push(`${envFile.path}: unknown variable ${key}${suggestion(key)}; it is ignored`);
      else if (env[key] === undefined) warnings.push(`${envFile.path}: ${key} has no effect here: the runtime reads it from the process environment only (export it, or use systemd's EnvironmentFile or docker --env-file)`);
    }
  }
  for (const key of Object.keys(env)) {
    if (VARIABLE_NAMES.has(key) || env[key] === undefined) continue;
    const near = closest(key);
    if (near === null && !OWN_PREFIXES.some((p) => key.startsWith(p))) continue;
    warnings.push(`environment: unknown variable ${key}${suggestion(key)}; it is ignored`);
  }
  return warnings;
}

function suggestion(key: string): string {
  const near = closest(key);
  return near ? ` (did you mean ${near}?)` : "";
}

function closest(key: string): string | null {
  let best: string | null = null;
  let bestDistance = TYPO_DISTANCE + 1;
  for (const name of VARIABLE_NAMES) {
    const d = editDistance(key.toUpperCase(), name, bestDistance);
    if (d < bestDistance) [best, bestDistance] = [name, d];
  }
  return best;
}

/** Levenshtein distance, giving up (returning `limit`) once it cannot be below it. */
function editDistance(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) >= limit) return limit;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      const v = Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost);
      row.push(v);
      rowMin = Math.min(rowMin, v);
    }
    if (rowMin >= limit) return limit;
    prev = row;
  }
  return Math.min(prev[b.length] ?? limit, limit);
}
