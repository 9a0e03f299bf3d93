/**
 * The delivery duration histogram (/metrics mailgw_delivery_duration_seconds) as daily
 * counters: each recorded attempt bumps `duration:<kind>:<le>` (the one bucket it falls in, not
 * cumulative) and adds its milliseconds to `duration_ms:<kind>`, in the transaction that records
 * it (queue-store finishAttempts). Counted at write time, not read back from delivery_attempts,
 * because those rows are deleted (`mailgw queue drop`, archive retention): a histogram summed
 * from them went down after a restart, which Prometheus reads as a counter reset and adds the
 * whole remaining count to increase() and rate().
 * Trusts: nothing; any duration is clamped to ≥ 0. Failure: none (pure).
 */
import type { DeliveryKind } from "../types.ts";
import type { CounterIncrement } from "./counters.ts";

/**
 * Bucket upper bounds in seconds: relay handshakes take ~0.1–2 s, timeouts tens of seconds.
 * Stored per bucket under its `le` text: changing these needs a migration for the old rows
 * (migration 6 wrote the history with exactly these bounds).
 */
export const DURATION_BUCKETS_SECONDS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120] as const;

export interface HistogramSeries {
  /** Cumulative counts per bucket in DURATION_BUCKETS_SECONDS order (le semantics). */
  buckets: number[];
  count: number;
  sumSeconds: number;
}

/** The `le` of the bucket an attempt of `durationMs` falls in ("+Inf" above the last bound). */
export function durationBucket(durationMs: number): string {
  const ms = Number.isFinite(durationMs) && durationMs > 0 ? durationMs : 0;
  const le = DURATION_BUCKETS_SECONDS.find((bound) => ms / 1000 <= bound);
  return le === undefined ? "+Inf" : String(le);
}

/** The counter increments one attempt makes: its bucket, and its milliseconds to the sum. */
export function durationIncrements(at: number, kind: DeliveryKind, durationMs: number): CounterIncrement[] {
  const ms = Number.isFinite(durationMs) && durationMs > 0 ? Math.round(durationMs) : 0;
  return [
    { at, metric: `duration:${kind}:${durationBucket(durationMs)}`, rule: null, category: "" },
    { at, metric: `duration_ms:${kind}`, rule: null, category: "", n: ms },
  ];
}

/** The histogram of one kind from counter rows (any days, any other metrics among them). */
export function durationHistogram(rows: readonly { metric: string; n: number }[], kind: DeliveryKind): HistogramSeries {
  const perBucket = new Map<string, number>();
  let count = 0;
  let sumMs = 0;
  for (const r of rows) {
    if (r.metric === `duration_ms:${kind}`) sumMs += r.n;
    else if (r.metric.startsWith(`duration:${kind}:`)) {
      const le = r.metric.slice(`duration:${kind}:`.length);
      perBucket.set(le, (perBucket.get(le) ?? 0) + r.n);
      count += r.n;
    }
  }
  let running = 0;
  const buckets = DURATION_BUCKETS_SECONDS.map((le) => (running += perBucket.get(String(le)) ?? 0));
  return { buckets, count, sumSeconds: sumMs / 1000 };
}
