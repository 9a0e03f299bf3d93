/**
 * STATS_TOKEN check for /stats, /stats.json and /metrics (SPEC §2). Accepts
 * `Authorization: Bearer TOKEN`, and also HTTP Basic with the token as password (any user
 * name) so a browser can open the page through its own login prompt.
 * Trusts: nothing from the request. Both sides are hashed to equal-length SHA-256 digests and
 * compared with crypto.timingSafeEqual, so the time taken says nothing about the token.
 * Failure: returns false; the server answers 401 with a WWW-Authenticate challenge.
 */
import { createHash, timingSafeEqual } from "node:crypto";

/** Longer Authorization headers are refused before hashing: stops hashing megabytes per request. */
const MAX_AUTHORIZATION_BYTES = 4096;

/**
 * Basic first: Bun joins the challenges into ONE WWW-Authenticate line, and browsers (Chromium,
 * Firefox) read only the first scheme of a line. With Bearer first they saw no scheme they
 * know and showed the bare 401 instead of a login prompt.
 */
export const AUTH_CHALLENGES = ['Basic realm="mailgw", charset="UTF-8"', 'Bearer realm="mailgw"'] as const;

export interface TokenChecker {
  /** True when no token is configured or the request carries the right one. */
  allows(authorization: string | null): boolean;
  readonly required: boolean;
}

export function createTokenChecker(token: string | null): TokenChecker {
  if (token === null) return { required: false, allows: () => true };
  const expected = sha256(token);
  return {
    required: true,
    allows(authorization) {
      const presented = presentedToken(authorization);
      if (presented === null) return false;
      return timingSafeEqual(sha256(presented), expected);
    },
  };
}

function presentedToken(authorization: string | null): string | null {
  if (authorization === null || authorization.length > MAX_AUTHORIZATION_BYTES) return null;
  const m = /^([A-Za-z]+) +(\S+)\s*$/.exec(authorization);
  if (!m) return null;
  const scheme = (m[1] ?? "").toLowerCase();
  const credentials = m[2] ?? "";
  if (scheme === "bearer") return credentials;
  if (scheme !== "basic") return null;
  const decoded = Buffer.from(credentials, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  return colon < 0 ? null : decoded.slice(colon + 1);
}

function sha256(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}
