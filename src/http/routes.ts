/**
 * What each path answers: /stats (the page), /stats.json, /metrics, /healthz, all read from
 * the database and the live status. Owns what must outlive one request: the metrics' counter
 * floor (counters never go down) and the last health verdict (a change is logged once, not
 * every probe). Separate from server.ts, which decides who may ask (method, Host, token).
 */
import type { Database } from "bun:sqlite";
import type { Config } from "../config/config.ts";
import type { Logger } from "../log/logger.ts";
import { databaseFile } from "../store/db-file.ts";
import { checkHealth, publicHealthReport } from "./healthz.ts";
import { METRICS_CONTENT_TYPE, renderMetrics, type CounterFloor } from "./metrics.ts";
import { coalesced } from "./coalesce.ts";
import { json, type Reply } from "./reply.ts";
import { collectStats, type StatsSnapshot } from "./stats-data.ts";
import { renderStatsPage } from "./stats-page.ts";
import { STATS_PAGE_CSP } from "./stats-page-assets.ts";
import type { StatusSource } from "./status-source.ts";

export type Route = "/stats" | "/stats.json" | "/metrics" | "/healthz";
export const ROUTES: ReadonlySet<string> = new Set<Route>(["/stats", "/stats.json", "/metrics", "/healthz"]);

export function createRoutes(opts: {
  config: Pick<Config, "dataDir" | "databasePath"> & { smtp: Pick<Config["smtp"], "hostname"> };
  db: Database;
  logger: Logger;
  status: StatusSource;
  /** Clock (unix ms). */
  now: () => number;
}): (path: Route) => Promise<Reply> {
  const { config, db, logger, status, now } = opts;
  const counterFloor: CounterFloor = new Map();
  // The database is open by now: /healthz checks that DATABASE_URL still names this file.
  const dbFile = databaseFile(config.databasePath);
  let lastHealthy: boolean | null = null;
  // Requests that come together share one snapshot, and one metrics exposition (coalesce.ts).
  const snapshot = coalesced((): { at: number; stats: StatsSnapshot } => {
    const at = now();
    return { at, stats: collectStats(db, status, at, config.smtp.hostname) };
  });
  const metricsText = coalesced(() => {
    const at = now();
    return renderMetrics(db, collectStats(db, status, at, config.smtp.hostname), counterFloor);
  });

  return async function route(path: Route): Promise<Reply> {
    switch (path) {
      case "/stats": {
        const { at, stats } = await snapshot();
        return { status: 200, body: renderStatsPage(stats, at), contentType: "text/html; charset=utf-8", csp: STATS_PAGE_CSP };
      }
      case "/stats.json":
        return json(200, (await snapshot()).stats);
      case "/metrics":
        return { status: 200, body: await metricsText(), contentType: METRICS_CONTENT_TYPE };
      case "/healthz": {
        const report = await checkHealth(db, config.dataDir, status, now(), dbFile);
        const healthy = report.status === "ok";
        if (healthy !== lastHealthy) {
          const details = Object.entries(report.checks).filter(([, c]) => !c.ok).map(([n, c]) => `${n}: ${c.detail ?? c.reason}`);
          if (healthy) logger.info("health ok", { warnings: report.warnings });
          else logger.warn("health check failing", { reasons: details });
          lastHealthy = healthy;
        }
        return json(healthy ? 200 : 503, publicHealthReport(report));
      }
    }
  };
}
