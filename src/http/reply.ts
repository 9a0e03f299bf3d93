/**
 * How every HTTP answer is built: a Reply (status, body, type, its CSP) becomes a Response
 * with the same security headers on all of them (CSP, nosniff, no-referrer, DENY framing,
 * same-origin, no-store), an exact Content-Length, and no body for HEAD. Separate from the
 * routes (what is answered) and the server (who may ask).
 */
import { terminalSafeJson } from "../log/terminal-json.ts";
import { AUTH_CHALLENGES } from "./auth.ts";
import { LOCKED_CSP } from "./stats-page-assets.ts";

export interface Reply {
  status: number;
  body: string;
  contentType: string;
  csp?: string;
  headers?: Record<string, string>;
}

/**
 * `curl /stats.json` is read in a terminal, and its failed deliveries carry senders' subjects and
 * addresses: C1 controls (U+009B is a CSI) and bidi overrides are written as \uXXXX escapes, as
 * in the log and `mailgw queue list --json`; a JSON reader gets the same strings.
 */
export function json(status: number, value: unknown): Reply {
  return { status, body: `${terminalSafeJson(value, 2)}\n`, contentType: "application/json; charset=utf-8" };
}

export function text(status: number, body: string): Reply {
  return { status, body, contentType: "text/plain; charset=utf-8" };
}

export function unauthorized(req: Request): Response {
  const res = respond(req, text(401, "authorization required: send Authorization: Bearer <STATS_TOKEN>\n"));
  for (const challenge of AUTH_CHALLENGES) res.headers.append("www-authenticate", challenge);
  return res;
}

export function baseHeaders(contentType: string, csp: string): Headers {
  return new Headers({
    "content-type": contentType,
    "content-security-policy": csp,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-resource-policy": "same-origin",
    "cache-control": "no-store",
  });
}

export function respond(req: Request, reply: Reply): Response {
  const headers = baseHeaders(reply.contentType, reply.csp ?? LOCKED_CSP);
  for (const [k, v] of Object.entries(reply.headers ?? {})) headers.set(k, v);
  const bytes = new TextEncoder().encode(reply.body);
  headers.set("content-length", String(bytes.byteLength));
  return new Response(req.method === "HEAD" ? null : bytes, { status: reply.status, headers });
}
