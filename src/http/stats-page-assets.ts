/**
 * The stats page's only style sheet and script, compiled into the executable (no file is read
 * at run time), and the Content-Security-Policy that allows exactly these two by SHA-256 hash:
 * nothing else may run or style the page, whatever a message managed to get into it.
 * Trusts: nothing. Failure: none (constants computed at load).
 */
import { createHash } from "node:crypto";

export const STATS_CSS = `
:root{color-scheme:light dark;--bg:#f4f5f7;--card:#fff;--fg:#16191d;--muted:#5f6874;--line:#e2e5e9;--accent:#2563eb;--accent-soft:#b9cdf8;--zero:#dfe3e8;
--ok:#167c3a;--ok-bg:#e6f4ea;--warn:#9a5b00;--warn-bg:#fff4dc;--bad:#b3261e;--bad-bg:#fce8e6;--code:#eef0f3}
@media (prefers-color-scheme:dark){:root{--bg:#0e1115;--card:#161a20;--fg:#e7eaee;--muted:#98a2ae;--line:#272d35;--accent:#6ea2ff;--accent-soft:#2f4d80;--zero:#262c34;
--ok:#5dd68a;--ok-bg:#11281a;--warn:#f5b942;--warn-bg:#2b220d;--bad:#ff8a80;--bad-bg:#2e1513;--code:#0b0d10}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
a{color:var(--accent)}
.wrap{max-width:1120px;margin:0 auto;padding:0 16px}
header.top{background:var(--card);border-bottom:1px solid var(--line)}
header.top .wrap{display:flex;flex-wrap:wrap;align-items:center;justify-content:space-between;gap:8px 16px;padding-top:12px;padding-bottom:12px}
.brand{display:flex;align-items:baseline;gap:10px;min-width:0}
.brand b{font-size:20px;letter-spacing:-.01em}
.brand .host{color:var(--muted);overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.meta{display:flex;flex-wrap:wrap;align-items:center;gap:6px 14px;color:var(--muted);font-size:13px}
.pill{display:inline-flex;align-items:center;gap:6px;padding:2px 10px;border-radius:999px;font-size:13px;font-weight:600}
.pill::before{content:"";width:7px;height:7px;border-radius:50%;background:currentColor}
.pill.ok{color:var(--ok);background:var(--ok-bg)}.pill.bad{color:var(--bad);background:var(--bad-bg)}
main.wrap{padding-top:16px;padding-bottom:24px;display:grid;gap:16px}
.alert{border-radius:10px;padding:12px 14px;border:1px solid;overflow-wrap:anywhere}
.alert.warn{color:var(--warn);background:var(--warn-bg);border-color:currentColor}
.alert.bad{color:var(--bad);background:var(--bad-bg);border-color:currentColor}
.alert strong{display:block}.alert span{color:var(--fg)}
.kpis{display:grid;gap:12px;grid-template-columns:repeat(auto-fit,minmax(170px,1fr))}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:14px 16px;min-width:0}
.kpi .label{color:var(--muted);font-size:13px}
.kpi .value{font-size:30px;font-weight:650;line-height:1.2;font-variant-numeric:tabular-nums;letter-spacing:-.01em}
.kpi .sub{color:var(--muted);font-size:12.5px}
.kpi.warn .value{color:var(--warn)}.kpi.bad .value{color:var(--bad)}
h2{font-size:12.5px;text-transform:uppercase;letter-spacing:.07em;color:var(--muted);margin:0 0 10px;font-weight:650}
h2 small{text-transform:none;letter-spacing:0;font-weight:400}
table+h2{margin-top:20px}
.cols{display:grid;gap:16px;grid-template-columns:repeat(auto-fit,minmax(min(100%,330px),1fr))}
table{width:100%;border-collapse:collapse;font-size:14px}
th,td{padding:6px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{color:var(--muted);font-weight:600;font-size:12.5px}
tr:last-child td{border-bottom:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td:first-child,th:first-child{padding-left:0}td:last-child,th:last-child{padding-right:0}
.mini{display:block;width:100%;min-width:50px;height:8px;margin-top:7px}
.mini rect{fill:var(--accent-soft)}.mini rect.track{fill:var(--zero)}
dl{display:grid;grid-template-columns:max-content 1fr;gap:6px 14px;margin:0;font-size:14px}
dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere;font-variant-numeric:tabular-nums}
code{font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;background:var(--code);border:1px solid var(--line);padding:1px 6px;border-radius:5px;overflow-wrap:anywhere}
code.cmd{user-select:all;white-space:pre-wrap}
.muted{color:var(--muted)}.ok{color:var(--ok)}.warn{color:var(--warn)}.bad{color:var(--bad)}
.err{color:var(--bad);overflow-wrap:anywhere}
.subject{font-weight:600;overflow-wrap:anywhere}
table.failed td.when{white-space:nowrap}table.failed td.msg{width:30%}table.failed td.target{width:20%;overflow-wrap:anywhere}
.chart{margin:0}
.plot{position:relative;margin:14px 0 0 44px}
.plot svg{display:block;width:100%;height:190px;overflow:visible}
.yaxis span{position:absolute;left:-44px;width:38px;text-align:right;font-size:11.5px;color:var(--muted);transform:translateY(-50%);font-variant-numeric:tabular-nums}
.yaxis .y100{top:0}.yaxis .y50{top:50%}.yaxis .y0{top:100%}
.xaxis{display:flex;justify-content:space-between;margin:6px 0 0 44px;font-size:11.5px;color:var(--muted)}
.xaxis .t{color:var(--accent);font-weight:650}
.gridline{stroke:var(--line);stroke-width:1;vector-effect:non-scaling-stroke}
.bar rect.v{fill:var(--accent-soft)}.bar rect.z{fill:var(--zero)}.bar.today rect.v,.bar.today rect.z{fill:var(--accent)}
.bar rect.hit{fill:transparent}.bar:hover rect.v{fill:var(--accent)}
.chart-head{display:flex;justify-content:space-between;align-items:baseline;gap:12px;flex-wrap:wrap}
.chart-head .big{font-size:14px;color:var(--muted)}.chart-head .big b{color:var(--fg);font-size:18px}
details{margin-top:10px;font-size:14px}summary{cursor:pointer;color:var(--muted)}
details table{max-width:340px}
footer{color:var(--muted);font-size:12.5px;padding-bottom:24px}
footer a{margin-right:12px}
@media (max-width:720px){
 .wrap{padding:0 12px}
 .kpis{grid-template-columns:repeat(2,minmax(0,1fr));gap:10px}
 .kpi .value{font-size:25px}
 .plot svg{height:150px}
 table.stack thead{display:none}
 table.stack tr{display:block;padding:10px 0;border-bottom:1px solid var(--line)}
 table.stack tr:last-child{border-bottom:0}
 table.stack td{display:flex;gap:10px;border:0;padding:2px 0;width:auto!important}
 table.stack td::before{content:attr(data-label);color:var(--muted);font-size:12.5px;min-width:5.5em;flex:none;padding-top:1px}
}
`;

/** Refreshes the page in place every 30 s while it is visible; without JS the page is complete, just static. */
export const STATS_JS = `
(() => {
  const PERIOD_MS = 30000;
  const app = () => document.getElementById("app");
  async function refresh() {
    if (document.hidden) return;
    try {
      const res = await fetch(location.pathname, { cache: "no-store", headers: { accept: "text/html" } });
      if (!res.ok) throw new Error("HTTP " + res.status);
      const next = new DOMParser().parseFromString(await res.text(), "text/html").getElementById("app");
      if (next) app().replaceWith(document.importNode(next, true));
    } catch (err) {
      const el = document.getElementById("updated");
      if (el) { el.textContent = "offline, retrying (" + (err && err.message ? err.message : err) + ")"; el.className = "bad"; }
    }
  }
  setInterval(refresh, PERIOD_MS);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
})();
`;

function sha256Source(text: string): string {
  return `'sha256-${createHash("sha256").update(text, "utf8").digest("base64")}'`;
}

/** Favicon as a data: URI (no request leaves the page): an envelope in the accent color. */
export const FAVICON_HREF =
  "data:image/svg+xml," +
  encodeURIComponent(
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect x="2" y="6" width="28" height="20" rx="4" fill="#2563eb"/><path d="M5 10l11 8 11-8" fill="none" stroke="#fff" stroke-width="2.5" stroke-linecap="round" stroke-linejoin="round"/></svg>`,
  );

export const STATS_PAGE_CSP = [
  "default-src 'none'",
  `style-src ${sha256Source(STATS_CSS)}`,
  `script-src ${sha256Source(STATS_JS)}`,
  "img-src data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** For every response that is not the page (JSON, metrics, errors): nothing may load at all. */
export const LOCKED_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
