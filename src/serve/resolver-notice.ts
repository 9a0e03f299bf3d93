/**
 * Says once that the system resolver has no name server to ask, when rules need DNS.
 * Without /etc/resolv.conf, or with one that lists no `nameserver`, c-ares (node:dns, and the
 * getServers() that dns-txt.ts asks) falls back to 127.0.0.1: where nothing answers DNS there,
 * every SPF/DKIM/DMARC lookup waited for its timeout, each message took the whole 5 s deadline
 * and the rules saw temperror, and nothing in the log said why. Bun reads the file once, at the
 * first DNS use (an edit is seen after a restart), so it is read here once too, at start.
 * Trusts: nothing. Failure: none (an unreadable file is the problem reported).
 */
import { readFileSync } from "node:fs";
import { getServers } from "node:dns";
import { describeError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";

export const RESOLV_CONF = "/etc/resolv.conf";

/** For /healthz, which is unauthenticated: no path, no server address. */
export const NO_RESOLVER_WARNING = "no DNS name server configured: SPF/DKIM/DMARC lookups go to the 127.0.0.1 fallback, and give temperror after 5 s where nothing answers there (the log says why)";

/** Why the system resolver has no name server (the file missing, unreadable, or without one), or null. */
export function resolverProblem(path = RESOLV_CONF): string | null {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ENOENT" ? `${path} does not exist` : `${path} cannot be read: ${describeError(err)}`;
  }
  return /^[ \t]*nameserver[ \t]+\S/m.test(text) ? null : `${path} lists no nameserver`;
}

export interface ResolverNotice {
  /** Call when rules that read spf, dkim or dmarc are in force (at start, before a message's checks): logs the problem the first time. */
  authChecksNeeded(): void;
  /** The /healthz warning while rules need the checks, or null. */
  warning(authNeeded: boolean): string | null;
}

export function createResolverNotice(logger: Logger, problem: string | null = resolverProblem()): ResolverNotice {
  let said = false;
  return {
    authChecksNeeded() {
      if (problem === null || said) return;
      said = true;
      logger.warn("no DNS name server configured: SPF/DKIM/DMARC lookups go to the fallback address; unless a DNS server answers there, each message waits 5 s for them and the rules see temperror", {
        reason: problem,
        asking: getServers().join(","),
        hint: `add a nameserver line to ${RESOLV_CONF} (or run a local resolver and name 127.0.0.1 there), then restart serve`,
      });
    },
    warning: (authNeeded) => (problem !== null && authNeeded ? NO_RESOLVER_WARNING : null),
  };
}
