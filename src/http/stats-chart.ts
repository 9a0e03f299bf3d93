/**
 * The received-per-day bar chart: inline SVG bars that stretch to any width (no text inside
 * the SVG, so nothing gets squashed on a phone), with the axis labels in HTML around it.
 * Each day is a <g data-day data-count aria-label> with a <title> tooltip; today's bar has
 * class "today" and data-today. No style attributes (the CSP allows only the hashed sheet).
 * Trusts: day keys and counts from stats-data (numbers and YYYY-MM-DD); escapes anyway.
 */
import { escapeHtml } from "./escape.ts";
import { formatCount, formatDay } from "./format.ts";

/** SVG user units: one slot of 10 per day, 100 high; bars fill 72% of a slot. */
const SLOT = 10;
const BAR = 7.2;
const HEIGHT = 100;
/** A day with no mail still shows a sliver so the 30 days stay countable. */
const ZERO_BAR_HEIGHT = 1.2;

/** Smallest round number ≥ n whose half is a whole number too, so both gridlines get integer labels. */
export function niceCeiling(n: number): number {
  if (n <= 4) return 4;
  if (n <= 10) return 2 * Math.ceil(n / 2);
  const magnitude = 10 ** Math.floor(Math.log10(n));
  for (const step of [1, 2, 3, 4, 5, 6, 8, 10]) if (step * magnitude >= n) return step * magnitude;
  return 10 * magnitude;
}

export function renderChart(days: readonly { day: string; received: number }[], today: string): string {
  const max = niceCeiling(Math.max(0, ...days.map((d) => d.received)));
  const bars = days.map((d, i) => renderBar(d.day, d.received, i, max, d.day === today)).join("");
  const first = days[0]?.day ?? today;
  const middle = days[Math.floor(days.length / 2)]?.day ?? today;
  const width = days.length * SLOT;
  return `<figure class="chart">
<div class="plot"><div class="yaxis" aria-hidden="true"><span class="y100">${formatCount(max)}</span><span class="y50">${formatCount(max / 2)}</span><span class="y0">0</span></div>
<svg viewBox="0 0 ${width} ${HEIGHT}" preserveAspectRatio="none" role="group" aria-label="Messages received per day, last ${days.length} days">
<line class="gridline" x1="0" x2="${width}" y1="0.5" y2="0.5"/><line class="gridline" x1="0" x2="${width}" y1="${HEIGHT / 2}" y2="${HEIGHT / 2}"/><line class="gridline" x1="0" x2="${width}" y1="${HEIGHT}" y2="${HEIGHT}"/>
${bars}
</svg></div>
<div class="xaxis" aria-hidden="true"><span>${escapeHtml(formatDay(first))}</span><span>${escapeHtml(formatDay(middle))}</span><span class="t">Today</span></div>
</figure>`;
}

function renderBar(day: string, count: number, index: number, max: number, isToday: boolean): string {
  const h = count > 0 ? Math.max(ZERO_BAR_HEIGHT, (count / max) * HEIGHT) : ZERO_BAR_HEIGHT;
  const x = index * SLOT + (SLOT - BAR) / 2;
  const label = `${isToday ? "Today, " : ""}${day}: ${formatCount(count)} received`;
  const attrs = `class="bar${isToday ? " today" : ""}" data-day="${escapeHtml(day)}" data-count="${count}"${isToday ? ' data-today="true"' : ""}`;
  return `<g ${attrs} role="img" aria-label="${escapeHtml(label)}"><title>${escapeHtml(label)}</title>` +
    `<rect class="hit" x="${index * SLOT}" y="0" width="${SLOT}" height="${HEIGHT}"/>` +
    `<rect class="${count > 0 ? "v" : "z"}" x="${x.toFixed(2)}" y="${(HEIGHT - h).toFixed(2)}" width="${BAR}" height="${h.toFixed(2)}"/></g>\n`;
}
