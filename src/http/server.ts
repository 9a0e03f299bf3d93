/**
 * The stats HTTP server (SPEC §6) on HTTP_HOST:HTTP_PORT: /stats, /stats.json, /metrics,
 * /healthz. GET and HEAD only; read-only towards the database.
 * Trusts: nothing from the request beyond its method, path and Host; STATS_TOKEN (when set)
 * guards everything but /healthz; without it, a loopback server answers only to its own names
 * (rebindingGuard). Every response carries a Content-Security-Policy (the page's allows
 * only its own hashed style and script), nosniff, no-referrer and no-store.
 * Failure: a port that cannot be bound throws a CliError naming HTTP_HOST/HTTP_PORT; an error
 * while answering is logged and becomes a generic 500 (503 for /healthz).
 */
import type { Database } from "bun:sqlite";
import type { Server } from "bun";
import { isIP } from "node:net";
import { hostname } from "node:os";
import type { Config } from "../config/config.ts";
import { CliError, describeError } from "../errors.ts";
import { hostPort, isLoopbackHost } from "../host-port.ts";
import type { Logger } from "../log/logger.ts";
import { createTokenChecker, type TokenChecker } from "./auth.ts";
import { baseHeaders, respond, text, unauthorized, type Reply } from "./reply.ts";
import { ROUTES, createRoutes, type Route } from "./routes.ts";
import { LOCKED_CSP } from "./stats-page-assets.ts";
import type { StatusSource } from "./status-source.ts";

/** We never read request bodies; anything larger is refused by Bun before it is buffered (memory exhaustion). */
const MAX_REQUEST_BODY_BYTES = 16 * 1024;
/** Idle keep-alive connections are closed after this: stops slow clients holding sockets open. */
const IDLE_TIMEOUT_SECONDS = 15;
/** How long stop() lets in-flight requests finish before closing their connections. */
const STOP_GRACE_MS = 2000;

export interface HttpServerOptions {
  config: Pick<Config, "http" | "dataDir" | "databasePath"> & { smtp: Pick<Config["smtp"], "hostname"> };
  db: Database;
  logger: Logger;
  status: StatusSource;
  /** Clock (unix ms); tests may pin it. */
  now?: () => number;
}

export interface HttpServer {
  start(): void;
  stop(): Promise<void>;
  /** Base URL once started, e.g. `http://127.0.0.1:3000/`. */
  readonly url: string;
}

export function createHttpServer(opts: HttpServerOptions): HttpServer {
  const { config, db, logger, status } = opts;
  const now = opts.now ?? Date.now;
  const token = createTokenChecker(config.http.statsToken);
  const route = createRoutes({ config, db, logger, status, now });
  const hostAllowed = rebindingGuard(config.http.host, token.required, [config.smtp.hostname, hostname()]);
  const handle = requestHandler({ route, hostAllowed, token, logger });
  let server: Server<undefined> | null = null;

  function url(): string {
    if (!server) throw new Error("http server not started");
    const host = server.hostname ?? config.http.host;
    return `http://${host.includes(":") ? `[${host}]` : host}:${server.port}/`;
  }

  return {
    start() {
      if (server) return;
      try {
        server = Bun.serve({
          hostname: config.http.host,
          port: config.http.port,
          maxRequestBodySize: MAX_REQUEST_BODY_BYTES,
          idleTimeout: IDLE_TIMEOUT_SECONDS,
          fetch: handle,
          error(err) {
            logger.error("http server error", { error: describeError(err) });
            return new Response("internal error\n", { status: 500, headers: baseHeaders("text/plain; charset=utf-8", LOCKED_CSP) });
          },
        });
      } catch (err) {
        throw new CliError(`cannot listen for HTTP on ${hostPort(config.http.host, config.http.port)}: ${describeError(err)} (check HTTP_HOST and HTTP_PORT)`);
      }
      logger.info("http listening", { url: url(), auth: token.required ? "token" : "none" });
      const warning = exposureWarning(config.http.host, token.required);
      if (warning) logger.warn(warning, { host: config.http.host });
    },
    async stop() {
      const s = server;
      if (!s) return;
      server = null;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const forced = new Promise<void>((resolve) => {
        timer = setTimeout(() => resolve(s.stop(true)), STOP_GRACE_MS);
      });
      await Promise.race([s.stop(false), forced]);
      clearTimeout(timer);
    },
    get url() {
      return url();
    },
  };
}

/**
 * Who may ask what, in order: a url that parses, a known path, GET or HEAD, then for all but
 * /healthz the Host check and the token; then the route, whose failure is a generic 500 (503
 * for /healthz) with the detail in the log.
 */
function requestHandler(gate: {
  route: (path: Route) => Promise<Reply>;
  hostAllowed: (host: string | null) => boolean;
  token: TokenChecker;
  logger: Logger;
}): (req: Request) => Promise<Response> {
  const { route, hostAllowed, token, logger } = gate;
  return async function handle(req: Request): Promise<Response> {
    const path = requestPath(req.url);
    // A Host header that is no host name (`[evil.example]`, `%`) gives Bun a url no parser takes:
    // the client's mistake, answered 400 without an ERROR line in the log for every such request.
    if (path === null) return respond(req, text(400, "bad request: invalid Host header\n"));
    // The start log names the root url: it leads to the page (relative, so a proxy's prefix stays).
    if (path === "/" && (req.method === "GET" || req.method === "HEAD")) return respond(req, { ...text(302, "see stats\n"), headers: { location: "stats" } });
    if (!ROUTES.has(path)) return respond(req, text(404, "not found\n"));
    if (req.method !== "GET" && req.method !== "HEAD") return respond(req, { ...text(405, "method not allowed\n"), headers: { allow: "GET, HEAD" } });
    // /healthz is open even with a token (SPEC §6) and says nothing the guard protects: a load
    // balancer or proxy probing it by the public name must not see the gateway as down.
    if (path !== "/healthz" && !hostAllowed(req.headers.get("host"))) return respond(req, text(403, FOREIGN_HOST_TEXT));
    if (path !== "/healthz" && !token.allows(req.headers.get("authorization"))) return unauthorized(req);
    try {
      return respond(req, await route(path as Route));
    } catch (err) {
      logger.error("http request failed", { path, error: describeError(err) });
      return respond(req, text(path === "/healthz" ? 503 : 500, path === "/healthz" ? '{"status":"unhealthy","reason":"internal error"}\n' : "internal error\n"));
    }
  };
}

/** The path of a request's url; null when the url does not parse (Bun builds it from the Host header). */
function requestPath(url: string): string | null {
  try {
    // An HTTP/1.0 request without Host has a bare path as its url.
    return new URL(url, "http://localhost").pathname;
  } catch {
    return null;
  }
}

const FOREIGN_HOST_TEXT =
  "forbidden: without STATS_TOKEN this server answers only to localhost, an IP address or this machine's name (DNS rebinding)\n";

/**
 * DNS rebinding: with HTTP_HOST on loopback and no token, a web page the admin opens (on this
 * machine, or through an `ssh -L` tunnel) can point its own name at 127.0.0.1 and read the
 * stats with the admin's browser. Such a request carries the page's name in Host, so only
 * IP literals, localhost, and this machine's names are answered. A token, or a bind to the
 * network (the admin chose to expose it; a warning says so at start), turns the check off.
 */
export function rebindingGuard(bindHost: string, tokenRequired: boolean, ownNames: readonly string[]): (host: string | null) => boolean {
  if (tokenRequired || !isLoopback(bindHost)) return () => true;
  const names = new Set(ownNames.filter((n) => n !== "").map((n) => n.toLowerCase().replace(/\.$/, "")));
  return (host) => {
    if (host === null) return true; // HTTP/1.0 clients (curl -0, probes): no name to rebind
    const name = host.toLowerCase().replace(/:\d+$/, "").replace(/\.$/, "");
    if (name.startsWith("[") || isIP(name) !== 0) return true;
    return name === "localhost" || name.endsWith(".localhost") || names.has(name);
  };
}

/** The warning logged at start when the stats are reachable from the network without a token. */
export function exposureWarning(host: string, tokenRequired: boolean): string | null {
  if (tokenRequired || isLoopback(host)) return null;
  return "stats page, stats.json and metrics are open to the network: set STATS_TOKEN, or bind HTTP_HOST to 127.0.0.1 (in a container, which needs 0.0.0.0: publish the port on the host's loopback only, e.g. -p 127.0.0.1:3000:3000)";
}

/** 127.0.0.0/8, ::1 and localhost: addresses only this machine can reach. */
export const isLoopback = isLoopbackHost;
