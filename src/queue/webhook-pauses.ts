/**
 * The webhook URLs whose receiver asked for quiet with Retry-After (slots.ts pausedUrls), held
 * by the delivery worker in memory, and their end by `mailgw queue retry`. A retry says the
 * admin has fixed the cause, as it ends a relay suspension (relay-suspension.ts): without this,
 * a retried post waited for the rest of its receiver's pause, up to the one-hour cap, while the
 * retry said it was queued for a new attempt. The CLI counts the retries that made webhook
 * deliveries due in meta (`webhook_retries`); the worker reads that count at most once per poll
 * while a pause runs, and a count that moved on lifts the pauses begun before it. Wall-clock
 * ends, as the retry times are: a clock stepped back ends the pauses (see paused).
 *
 * Trusts: the meta table. Failure: a database that cannot be read lifts nothing (the pauses
 * still end at their time); never throws.
 */
import type { Database } from "bun:sqlite";
import { RETRY_CAP_MS } from "./retry.ts";
import { pausedUrls } from "./slots.ts";

const META_KEY = "webhook_retries";

/** `mailgw queue retry` made webhook deliveries due: a running serve lifts its Retry-After pauses. */
export function recordWebhookRetry(db: Database): void {
  db.query(
    `INSERT INTO meta (key, value) VALUES (?1, '1')
     ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)`,
  ).run(META_KEY);
}

function retryCount(db: Database): string | null {
  try {
    return db.query<{ value: string }, [string]>(`SELECT value FROM meta WHERE key = ?`).get(META_KEY)?.value ?? "0";
  } catch {
    return null;
  }
}

export interface WebhookPauses {
  /** The receiver of `url` asked for `ms` of quiet at `now` (held at most RETRY_CAP_MS). */
  pause(url: string, ms: number, now: number): void;
  /** The URLs none of whose posts may start at `now`. */
  paused(now: number): ReadonlySet<string>;
}

/** `checkEveryMs`: how often, at most, the retry count is read while a pause runs. */
export function createWebhookPauses(db: Database, checkEveryMs: number): WebhookPauses {
  const until = new Map<string, number>();
  /** The retry count the running pauses began under (null: not read). */
  let retriesSeen: string | null = null;
  let checkedAt = -Infinity;

  /** Lifts every pause when a retry was counted since they began. */
  function liftIfRetried(): void {
    const count = retryCount(db);
    if (count === null) return;
    if (retriesSeen !== null && count !== retriesSeen) until.clear();
    retriesSeen = count;
  }

  return {
    pause(url, ms, now) {
      // A retry counted before this pause applies to the others only, not to this one.
      liftIfRetried();
      until.set(url, Math.max(until.get(url) ?? 0, now + Math.min(RETRY_CAP_MS, ms)));
    },
    paused(now) {
      // abs: after the clock went back, now is below the last check's time.
      if (until.size > 0 && Math.abs(now - checkedAt) >= checkEveryMs) {
        checkedAt = now;
        liftIfRetried();
      }
      // No pause lasts longer than RETRY_CAP_MS: an end further away was set before the clock
      // was stepped back (NTP), and held the URL until the clock caught up (a day for a day's step).
      for (const [url, at] of until) if (at - now > RETRY_CAP_MS) until.delete(url);
      return pausedUrls(until, now);
    },
  };
}
