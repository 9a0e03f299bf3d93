/**
 * GET /stats: one self-contained HTML page rendered from a StatsSnapshot. Inline CSS and SVG
 * only, readable without JavaScript; the one small script refreshes it in place.
 * Trusts: nothing in the snapshot's strings — subjects, addresses, categories, rule versions
 * and relay errors all pass through escapeHtml; numbers are formatted, never interpolated raw.
 * Failure: none (pure rendering).
 */
import { RELAY_FIX_HINT } from "../queue/relay-suspension-store.ts";
import type { Action } from "../types.ts";
import { REFUSAL_REASONS, type RefusalReason } from "../smtp/refusals.ts";
import { escapeHtml as e } from "./escape.ts";
import { formatAgo, formatCount, formatDuration, formatPercent, formatTime } from "./format.ts";
import { renderChart } from "./stats-chart.ts";
import { ACTIONS, QUEUE_STATES, type FailedDelivery, type StatsSnapshot } from "./stats-data.ts";
import { FAVICON_HREF, STATS_CSS, STATS_JS } from "./stats-page-assets.ts";

const ACTION_LABELS: Record<Action, string> = {
  reject: "Rejected",
  archive: "Archived",
  forward: "Forwarded",
  webhook: "Webhook",
  drop: "Dropped",
};

export function renderStatsPage(s: StatsSnapshot, now: number): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="referrer" content="no-referrer">
<title>mailgw · ${e(s.smtp.hostname)}</title>
<link rel="icon" href="${FAVICON_HREF}">
<style>${STATS_CSS}</style>
</head><body><div id="app">
${header(s)}
<main class="wrap">
${alerts(s)}
${kpis(s)}
<section class="card" aria-labelledby="h-chart">${chartSection(s)}</section>
<div class="cols">
<section class="card" aria-labelledby="h-actions">${actionsSection(s)}</section>
<section class="card" aria-labelledby="h-categories">${categoriesSection(s)}</section>
</div>
<section class="card" aria-labelledby="h-by-rule">${deliveriesByRuleSection(s)}</section>
<section class="card" aria-labelledby="h-failed">${failedSection(s.failedDeliveries, s.queue.depth.failed, now)}</section>
<div class="cols">
<section class="card" aria-labelledby="h-queue">${queueSection(s)}</section>
<section class="card" aria-labelledby="h-rules">${rulesSection(s, now)}</section>
<section class="card" aria-labelledby="h-gateway">${gatewaySection(s)}</section>
</div>
</main>
<footer class="wrap"><a href="stats.json">stats.json</a><a href="metrics">metrics</a><a href="healthz">healthz</a>
<span>Days are UTC. Generated ${e(formatTime(s.generatedAt))}.</span></footer>
</div><script>${STATS_JS}</script></body></html>
`;
}

function header(s: StatsSnapshot): string {
  const smtp = s.smtp.listening ? `<span class="pill ok">SMTP up</span>` : `<span class="pill bad">SMTP down</span>`;
  return `<header class="top"><div class="wrap">
<div class="brand"><b>mailgw</b><span class="host">${e(s.smtp.hostname)}</span></div>
<div class="meta">${smtp}<span>up ${e(formatDuration(s.uptimeSeconds))}</span><span>v${e(s.version)}</span><span id="updated">updated ${e(s.generatedAt.slice(11, 19))} UTC</span></div>
</div></header>`;
}

function alerts(s: StatsSnapshot): string {
  const out: string[] = [];
  if (!s.smtp.listening) out.push(alert("bad", "The SMTP listener is not accepting connections.", "Mail is not being received; check the log."));
  if (s.rules.lastError !== null) {
    const when = s.rules.lastErrorAt ? ` at ${formatTime(s.rules.lastErrorAt)}` : "";
    out.push(alert("bad", `The last rules reload was refused${when}; the previous rules stay in force.`, s.rules.lastError));
  }
  if (!s.relay.configured) {
    out.push(alert("warn", "No relay configured: forwarded mail is held in the queue.", "Set RELAY_SMTP_HOST (and credentials), then restart mailgw (SIGHUP is enough when it is set in .env)."));
  } else if (s.relay.suspended !== null) {
    const r = s.relay.suspended;
    out.push(alert("warn", `The relay is suspended since ${formatTime(r.since)}: forwarded mail waits; one message is tried at ${formatTime(r.until)}.`,
      `${r.reason} — ${RELAY_FIX_HINT}.`));
  }
  for (const w of s.storage.warnings) out.push(alert("warn", `${w.charAt(0).toUpperCase()}${w.slice(1)}.`, DISK_FIX_HINT));
  return out.join("\n");
}

const DISK_FIX_HINT = "Free space on that disk (ARCHIVE_MAX_AGE_DAYS prunes the archive), or move it to a bigger one; mail that fits is still received.";

function alert(kind: "warn" | "bad", title: string, detail: string): string {
  return `<div class="alert ${kind}" role="${kind === "bad" ? "alert" : "status"}"><strong>${e(title)}</strong><span>${e(detail)}</span></div>`;
}

function kpis(s: StatsSnapshot): string {
  const t = s.totals.today;
  const m = s.totals.last30Days;
  const q = s.queue.depth;
  const pending = q.queued + q.deferred + q.held + q.delivering;
  const delivered = t.deliveries.forward.delivered + t.deliveries.webhook.delivered;
  const oldest = s.queue.oldestDeferredAgeSeconds;
  return `<section class="kpis" aria-label="Today">
${kpi("Received today", formatCount(t.received), `${formatCount(m.received)} in 30 days`, "", "kpi-received")}
${kpi("Rejected today", formatCount(t.byAction.reject), `${formatCount(m.byAction.reject)} in 30 days`)}
${kpi("Delivered today", formatCount(delivered), `relay ${formatCount(t.deliveries.forward.delivered)} · webhook ${formatCount(t.deliveries.webhook.delivered)}`)}
${kpi("In queue", formatCount(pending), oldest !== null ? `oldest ${formatDuration(oldest)}` : q.held > 0 ? `${formatCount(q.held)} held` : "nothing deferred", q.deferred + q.held > 0 ? "warn" : "")}
${kpi("Failed deliveries", formatCount(q.failed), q.failed > 0 ? "waiting for a retry" : "none", q.failed > 0 ? "bad" : "")}
${kpi("TLS sessions", formatPercent(t.tlsShare), `${formatPercent(m.tlsShare)} over 30 days`)}
</section>`;
}

function kpi(label: string, value: string, sub: string, tone = "", id = ""): string {
  return `<div class="card kpi${tone ? ` ${tone}` : ""}"${id ? ` id="${id}"` : ""}><div class="label">${e(label)}</div><div class="value">${e(value)}</div><div class="sub">${e(sub)}</div></div>`;
}

function chartSection(s: StatsSnapshot): string {
  const rows = [...s.receivedPerDay]
    .reverse()
    .map((d) => `<tr><td>${e(d.day)}${d.day === s.today ? " (today)" : ""}</td><td class="num">${formatCount(d.received)}</td></tr>`)
    .join("");
  return `<div class="chart-head"><h2 id="h-chart">Received per day <small>last 30 days, UTC</small></h2>
<span class="big"><b>${formatCount(s.totals.last30Days.received)}</b> in 30 days</span></div>
${renderChart(s.receivedPerDay, s.today)}
<details><summary>Show as a table</summary><table><thead><tr><th>Day</th><th class="num">Received</th></tr></thead><tbody>${rows}</tbody></table></details>`;
}

function miniBar(value: number, max: number): string {
  const pct = max > 0 ? Math.max(value > 0 ? 1.5 : 0, (value / max) * 100) : 0;
  return `<svg class="mini" viewBox="0 0 100 8" preserveAspectRatio="none" aria-hidden="true"><rect class="track" width="100" height="8" rx="2"/><rect width="${pct.toFixed(2)}" height="8" rx="2"/></svg>`;
}

function actionsSection(s: StatsSnapshot): string {
  const t = s.totals.today.byAction;
  const m = s.totals.last30Days.byAction;
  const max = Math.max(0, ...ACTIONS.map((a) => m[a]));
  const rows = ACTIONS.map(
    (a) =>
      `<tr data-action="${a}"><td>${ACTION_LABELS[a]} <span class="muted">(${a})</span>${miniBar(m[a], max)}</td><td class="num">${formatCount(t[a])}</td><td class="num">${formatCount(m[a])}</td></tr>`,
  ).join("");
  return `<h2 id="h-actions">By action</h2>
<table><thead><tr><th>Action</th><th class="num">Today</th><th class="num">30 days</th></tr></thead><tbody>${rows}</tbody></table>
<p class="muted" id="archived-copies">Copies archived (the archive action, and forward or webhook rules with <code>archive: true</code>): ${formatCount(s.totals.today.archived)} today, ${formatCount(s.totals.last30Days.archived)} in 30 days.</p>
${refusedTable(s)}`;
}

const REFUSAL_LABELS: Record<RefusalReason, string> = {
  relay_denied: "Relaying denied (recipient outside domains)",
  too_many_recipients: "Too many recipients",
  rate_limited: "Rate limit",
  tls_required: "STARTTLS required",
  too_big: "Too big",
  mail_loop: "Mail loop",
  not_allowed: "Address not allowed",
  too_many_connections: "Too many connections",
  too_many_errors: "Too many errors",
  insufficient_storage: "Declared size does not fit on the disk",
};

/** The gateway's own refusals in the SMTP session (no message was classified), reasons seen in 30 days. */
function refusedTable(s: StatsSnapshot): string {
  const t = s.totals.today.refused;
  const m = s.totals.last30Days.refused;
  const seen = REFUSAL_REASONS.filter((r) => m[r] > 0);
  if (seen.length === 0) return `<h2 id="h-refused">Refused in the SMTP session <small>no message classified</small></h2><p class="muted">None in 30 days (relaying attempts, oversize mail, rate limits... show up here).</p>`;
  const rows = seen
    .map((r) => `<tr data-refused="${r}"><td>${e(REFUSAL_LABELS[r])} <span class="muted">(${r})</span></td><td class="num">${formatCount(t[r])}</td><td class="num">${formatCount(m[r])}</td></tr>`)
    .join("");
  return `<h2 id="h-refused">Refused in the SMTP session <small>no message classified</small></h2>
<table><thead><tr><th>Reason</th><th class="num">Today</th><th class="num">30 days</th></tr></thead><tbody>${rows}</tbody></table>`;
}

function categoriesSection(s: StatsSnapshot): string {
  const max = Math.max(0, ...s.categories.map((c) => c.last30Days));
  const rows = s.categories
    .map(
      (c) =>
        `<tr data-category="${e(c.category)}"><td>${e(c.category)}${miniBar(c.last30Days, max)}</td><td class="num">${formatCount(c.today)}</td><td class="num">${formatCount(c.last30Days)}</td></tr>`,
    )
    .join("");
  const body = rows || `<tr><td colspan="3" class="muted">No messages classified in the last 30 days.</td></tr>`;
  return `<h2 id="h-categories">By category</h2>
<table><thead><tr><th>Category</th><th class="num">Today</th><th class="num">30 days</th></tr></thead><tbody>${body}</tbody></table>`;
}

/**
 * Rows of the deliveries-by-rule table, the busiest first: one per rule, category and kind seen in
 * 30 days, so a year of 300 rules in 40 categories made 600 rows and a 335 KB page. The rest are
 * counted in a last row (their failures too) and are all in stats.json and /metrics.
 */
const BY_RULE_ROWS_SHOWN = 50;

function deliveriesByRuleSection(s: StatsSnapshot): string {
  const rest = s.deliveriesByRule.slice(BY_RULE_ROWS_SHOWN);
  const restFailed = rest.reduce((n, d) => n + d.last30Days.failed, 0);
  const more = rest.length === 0 ? "" :
    `<tr class="more"><td colspan="6" class="muted">${formatCount(rest.length)} more rule, category and kind combinations with fewer attempts` +
    ` (${formatCount(restFailed)} failed in 30 days): all are in <a href="stats.json">stats.json</a> and <a href="metrics">metrics</a>.</td></tr>`;
  const rows = s.deliveriesByRule
    .slice(0, BY_RULE_ROWS_SHOWN)
    .map((d) => {
      const rule = d.rule === "" ? `<span class="muted">(default action)</span>` : e(d.rule);
      const cell = (label: string, today: number, month: number, tone = ""): string =>
        `<td data-label="${label}" class="num${month > 0 && tone ? ` ${tone}` : ""}">${formatCount(month)} <span class="muted">(${formatCount(today)} today)</span></td>`;
      return `<tr data-rule="${e(d.rule)}" data-kind="${d.kind}" data-category="${e(d.category)}"><td data-label="Rule">${rule}</td><td data-label="Category">${e(d.category)}</td><td data-label="Kind">${d.kind}</td>` +
        cell("Delivered", d.today.delivered, d.last30Days.delivered) + cell("Deferred", d.today.deferred, d.last30Days.deferred, "warn") + cell("Failed", d.today.failed, d.last30Days.failed, "bad") + `</tr>`;
    })
    .join("") + more;
  const body = rows || `<tr><td colspan="6" class="muted">No forward or webhook deliveries attempted in the last 30 days.</td></tr>`;
  return `<h2 id="h-by-rule">Deliveries by rule <small>attempt outcomes, last 30 days</small></h2>
<table class="stack by-rule"><thead><tr><th>Rule</th><th>Category</th><th>Kind</th><th class="num">Delivered</th><th class="num">Deferred</th><th class="num">Failed</th></tr></thead><tbody>${body}</tbody></table>`;
}

/** `total`: every failed delivery in the queue; the list holds the latest few. */
function failedSection(failed: readonly FailedDelivery[], total: number, now: number): string {
  if (failed.length === 0) {
    return `<h2 id="h-failed">Failed deliveries</h2><p class="muted">No failed deliveries. Deliveries that give up (permanent error or too old) show up here with the command to retry them.</p>`;
  }
  const rows = failed.map((f) => failedRow(f, now)).join("\n");
  const heading = total > failed.length ? `latest ${failed.length} of ${formatCount(total)}` : `${failed.length}`;
  const all = total > failed.length ? `\n<p class="muted">All of them: <code class="cmd">mailgw queue list --state failed</code></p>` : "";
  return `<h2 id="h-failed">Failed deliveries <small>${heading}</small></h2>${all}
<table class="stack failed"><thead><tr><th>Failed</th><th>Message</th><th>Target</th><th>Last error</th><th>Retry with</th></tr></thead><tbody>
${rows}
</tbody></table>`;
}

function failedRow(f: FailedDelivery, now: number): string {
  const subject = f.subject === null ? `<span class="muted">(message record missing)</span>` : f.subject === "" ? `<span class="muted">(no subject)</span>` : `<span class="subject">${e(f.subject)}</span>`;
  const from = f.mailFrom === null ? "" : `<div class="muted">from ${e(f.mailFrom === "" ? "<>" : f.mailFrom)}</div>`;
  return `<tr data-delivery="${f.id}"><td data-label="Failed" class="when"><span title="${e(formatTime(f.failedAt))}">${e(formatAgo(f.failedAt, now))}</span><div class="muted">${f.attempts} attempt${f.attempts === 1 ? "" : "s"}</div></td>` +
    `<td data-label="Message" class="msg"><div>${subject}${from}<div class="muted"><code>${e(f.messageId)}</code></div></div></td>` +
    `<td data-label="Target" class="target"><div><span class="muted">${e(f.kind)}</span> ${e(f.target)}</div></td>` +
    `<td data-label="Error"><div class="err">${f.lastError === null ? `<span class="muted">(none recorded)</span>` : e(f.lastError)}</div></td>` +
    `<td data-label="Retry"><code class="cmd">${e(f.retryCommand)}</code></td></tr>`;
}

function queueSection(s: StatsSnapshot): string {
  const rows = QUEUE_STATES.map((st) => `<dt>${st}</dt><dd data-state="${st}">${formatCount(s.queue.depth[st])}</dd>`).join("");
  const oldest = s.queue.oldestDeferredAgeSeconds;
  return `<h2 id="h-queue">Delivery queue</h2>
<dl>${rows}<dt>oldest deferred</dt><dd>${oldest === null ? `<span class="muted">none</span>` : e(formatDuration(oldest))}</dd></dl>`;
}

function rulesSection(s: StatsSnapshot, now: number): string {
  const r = s.rules;
  const status = r.lastError === null ? `<span class="ok">in force</span>` : `<span class="bad">last reload refused</span>`;
  return `<h2 id="h-rules">Rules</h2>
<dl><dt>version</dt><dd>${r.version === null ? `<span class="muted">not loaded</span>` : `<code>${e(r.version)}</code>`}</dd>
<dt>loaded</dt><dd>${r.loadedAt === null ? "–" : `${e(formatTime(r.loadedAt))} <span class="muted">(${e(formatAgo(r.loadedAt, now))})</span>`}</dd>
<dt>status</dt><dd>${status}</dd>
<dt>reloads</dt><dd>${formatCount(r.reloads.ok)} ok, ${formatCount(r.reloads.failed)} refused</dd>
${r.lastError === null ? "" : `<dt>error</dt><dd class="err">${e(r.lastError)}</dd>`}</dl>`;
}

function gatewaySection(s: StatsSnapshot): string {
  const tls = s.smtp.tls.enabled ? (s.smtp.tls.required ? "STARTTLS required" : "STARTTLS offered") : `<span class="warn">off</span>`;
  const suspended = s.relay.suspended ? ` <span class="warn">suspended since ${e(formatTime(s.relay.suspended.since))}</span>` : "";
  const relay = s.relay.configured ? `${e(s.relay.address ?? "configured")}${suspended}` : `<span class="warn">none — forwards held</span>`;
  return `<h2 id="h-gateway">Gateway</h2>
<dl><dt>SMTP</dt><dd>${s.smtp.listening ? `<span class="ok">listening</span>` : `<span class="bad">not listening</span>`}</dd>
<dt>TLS</dt><dd>${tls}</dd>
<dt>relay</dt><dd>${relay}</dd>
<dt>sessions</dt><dd>${formatCount(s.totals.today.sessions)} today, ${formatPercent(s.totals.today.tlsShare)} TLS</dd>
<dt>started</dt><dd>${e(formatTime(s.startedAt))}</dd>
<dt>version</dt><dd>${e(s.version)}</dd></dl>`;
}
