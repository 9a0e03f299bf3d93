/**
 * mailgw_delivery_duration_seconds: a histogram of delivery attempt durations, read from
 * delivery_attempts.duration_ms. Incremental: each refresh reads only rows with an id above
 * the last one seen (the rowid primary key), so a scrape costs the attempts since the last
 * scrape, not the whole table. The first refresh after start reads history in bounded chunks.
 * Trusts: the schema (deliveries.kind is forward | webhook; anything else is counted as forward).
 * Failure: a database error propagates; counts already folded in stay, the cursor does not move
 * past rows not yet counted.
 */
import type { Database } from "bun:sqlite";
import type { DeliveryKind } from "../types.ts";

/** Bucket upper bounds in seconds: relay handshakes take ~0.1–2 s, timeouts tens of seconds. */
export const DURATION_BUCKETS_SECONDS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120] as const;
/** Rows read per query: bounds the memory one refresh holds at a time. */
const REFRESH_CHUNK_ROWS = 5000;

export interface HistogramSeries {
  /** Cumulative counts per bucket in DURATION_BUCKETS_SECONDS order (le semantics). */
  buckets: number[];
  count: number;
  sumSeconds: number;
}

export class DeliveryDurationHistogram {
  private lastAttemptId = 0;
  private readonly perKind: Record<DeliveryKind, { counts: number[]; count: number; sumMs: number }> = {
    forward: emptySeries(),
    webhook: emptySeries(),
  };

  /** Folds in attempts recorded since the last refresh. */
  refresh(db: Database): void {
    const query = db.query<{ id: number; duration_ms: number; kind: string | null }, [number, number]>(
      `SELECT a.id, a.duration_ms, d.kind FROM delivery_attempts a LEFT JOIN deliveries d ON d.id = a.delivery_id
        WHERE a.id > ? ORDER BY a.id LIMIT ?`,
    );
    for (;;) {
      const rows = query.all(this.lastAttemptId, REFRESH_CHUNK_ROWS);
      for (const r of rows) {
        this.observe(r.kind === "webhook" ? "webhook" : "forward", r.duration_ms);
        this.lastAttemptId = r.id;
      }
      if (rows.length < REFRESH_CHUNK_ROWS) return;
    }
  }

  series(kind: DeliveryKind): HistogramSeries {
    const s = this.perKind[kind];
    let running = 0;
    const buckets = s.counts.map((c) => (running += c));
    return { buckets, count: s.count, sumSeconds: s.sumMs / 1000 };
  }

  private observe(kind: DeliveryKind, durationMs: number): void {
    const s = this.perKind[kind];
    const ms = Number.isFinite(durationMs) && durationMs > 0 ? durationMs : 0;
    const i = DURATION_BUCKETS_SECONDS.findIndex((le) => ms / 1000 <= le);
    if (i >= 0) s.counts[i] = (s.counts[i] ?? 0) + 1;
    s.count += 1;
    s.sumMs += ms;
  }
}

function emptySeries(): { counts: number[]; count: number; sumMs: number } {
  return { counts: DURATION_BUCKETS_SECONDS.map(() => 0), count: 0, sumMs: 0 };
}
