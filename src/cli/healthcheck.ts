/**
 * `mailgw healthcheck`: asks the running gateway's /healthz (for Docker HEALTHCHECK) and
 * prints one line. Exit 0 healthy, 1 not (unreachable, timeout, 503, unreadable answer).
 * Trusts: the configured HTTP_HOST/HTTP_PORT (or `--http-port`, as given to serve), and no other
 * setting: a typo elsewhere in .env is for the next start of serve to refuse; a wildcard bind address (0.0.0.0, ::) is asked
 * on loopback (`::` on ::1, then on 127.0.0.1 if ::1 cannot be reached). Failure: every failure is one line on stderr and exit 1, never a stack trace.
 */
import { defineCommand } from "citty";
import { loadHttpAddress } from "../config/config.ts";
import { envFileArg, envFileOption } from "./env-file.ts";
import { CliError, describeError } from "../errors.ts";
import { terminalSafeLine } from "../log/terminal-json.ts";
import { cliAction } from "./action.ts";

/** Docker's own timeout is 30 s by default; answer well before it so the reason gets printed. */
const HEALTHCHECK_TIMEOUT_MS = 3000;

export function healthzUrl(host: string, port: number): string {
  const h = host === "0.0.0.0" || host === "" ? "127.0.0.1" : host === "::" || host === "[::]" ? "::1" : host.replace(/^\[|\]$/g, "");
  return `http://${h.includes(":") ? `[${h}]` : h}:${port}/healthz`;
}

/**
 * Every URL to try, in order. A `::` socket also takes IPv4, and with IPv6 turned off by sysctl
 * (`docker run --sysctl net.ipv6.conf.all.disable_ipv6=1`, hardened hosts) it still listens but
 * ::1 does not exist: asking only ::1 reported a healthy gateway unhealthy (EADDRNOTAVAIL).
 */
export function healthzUrls(host: string, port: number): string[] {
  const first = healthzUrl(host, port);
  return host === "::" || host === "[::]" ? [first, healthzUrl("0.0.0.0", port)] : [first];
}

export default defineCommand({
  meta: { name: "healthcheck", description: "Ask the running gateway's /healthz; exit 0 when healthy, 1 when not (for Docker HEALTHCHECK)" },
  args: {
    timeout: { type: "string", description: `Give up after this many milliseconds (default ${HEALTHCHECK_TIMEOUT_MS})` },
    "http-port": { type: "string", description: "Stats/health HTTP port serve was given (HTTP_PORT, default 3000)" },
    ...envFileArg,
  },
  run: cliAction<{ timeout?: string; "http-port"?: string; "env-file"?: string }>(async (args) => {
    const timeoutMs = args.timeout === undefined ? HEALTHCHECK_TIMEOUT_MS : Number(args.timeout);
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 600_000) {
      throw new CliError(`--timeout=${args.timeout} is not a number of milliseconds between 1 and 600000`);
    }
    const http = loadHttpAddress({ envFile: envFileOption(args["env-file"]), flags: { HTTP_PORT: args["http-port"] } });
    const urls = healthzUrls(http.host, http.port);
    const deadline = AbortSignal.timeout(timeoutMs);
    let res: Response | null = null;
    let url = "";
    for (const [i, candidate] of urls.entries()) {
      url = candidate;
      try {
        res = await fetch(url, { signal: deadline, redirect: "error" });
        break;
      } catch (err) {
        const timedOut = err instanceof Error && err.name === "TimeoutError";
        // Only an address that cannot be reached moves on to the next; a timeout is the answer.
        if (!timedOut && i + 1 < urls.length) continue;
        const why = timedOut ? `no answer within ${timeoutMs} ms` : describeError(err);
        throw new CliError(`unhealthy: ${url} unreachable: ${why} (is mailgw serve running? check HTTP_HOST/HTTP_PORT)`);
      }
    }
    if (res === null) throw new CliError(`unhealthy: ${url} unreachable`); // not reached: the loop answers or throws
    const body = await res.text().catch(() => "");
    let report: { status?: unknown; reason?: unknown; warnings?: unknown } = {};
    try {
      report = JSON.parse(body) as typeof report;
    } catch {
      // Not JSON: judged by the status code alone.
    }
    if (res.status === 200 && report.status === "ok") {
      const warnings = Array.isArray(report.warnings) && report.warnings.length > 0 ? ` (warnings: ${report.warnings.map(String).join("; ")})` : "";
      // A warning can quote a relay's reply or a file name: one line, no terminal escapes.
      process.stdout.write(`${terminalSafeLine(`healthy: ${url}${warnings}`)}\n`);
      return 0;
    }
    const reason = typeof report.reason === "string" ? report.reason : `HTTP ${res.status}`;
    throw new CliError(`unhealthy: ${reason} (${url})`);
  }),
});
