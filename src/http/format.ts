/**
 * Number, time and duration formatting for the stats page: fixed English, UTC, so the page
 * reads the same for every admin and in every test. Pure; never throws on odd input.
 */

export function formatCount(n: number): string {
  return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

export function formatPercent(share: number | null): string {
  if (share === null) return "–";
  const pct = share * 100;
  return `${pct >= 10 || pct === 0 ? Math.round(pct) : pct.toFixed(1)}%`;
}

/** "2 d 4 h", "3 h 12 min", "5 min", "42 s". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return h > 0 ? `${d} d ${h} h` : `${d} d`;
  if (h > 0) return m > 0 ? `${h} h ${m} min` : `${h} h`;
  if (m > 0) return `${m} min`;
  return `${s} s`;
}

/** "2024-05-01 12:03 UTC" from an ISO timestamp. */
export function formatTime(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

/** "May 1" from a YYYY-MM-DD day key. */
export function formatDay(day: string): string {
  const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const month = months[Number(day.slice(5, 7)) - 1] ?? day.slice(5, 7);
  return `${month} ${Number(day.slice(8, 10))}`;
}

/** "3 min ago" relative to `now`, for timestamps in the past. */
export function formatAgo(iso: string, now: number): string {
  return `${formatDuration((now - Date.parse(iso)) / 1000)} ago`;
}
