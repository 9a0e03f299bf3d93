/**
 * Words for a failed webhook attempt that tell the admin what to change. What receivers and
 * the proxies in front of them answer names neither the cause nor the fix: nginx's error pages
 * are HTML ("<html> <head><title>413 Request Entity Too Large</title>…"), a redirect's status
 * alone does not say where to, and a TLS error ("self signed certificate") does not say how to
 * trust a private CA. The text lands in `queue list`, the stats page and the delivery log line.
 *
 * Trusts nothing in the reply: it is reduced to one line of text (the caller bounds its size).
 * Failure: none; pure functions.
 */
import { htmlToText } from "../parse/html-text.ts";

export interface StatusFacts {
  status: number;
  /** The reason phrase (`Request Entity Too Large`); "" when the server sent none. */
  statusText: string;
  /** A redirect's target, already stripped of query and credentials; null when absent. */
  location: string | null;
  /** Size of the body that was posted. */
  bodyBytes: number;
}

/** `HTTP <status> <reason>`, and for the statuses an admin fixes in a config, what to fix. */
export function describeStatus(f: StatusFacts): string {
  const head = `HTTP ${f.status}${f.statusText ? ` ${f.statusText}` : ""}`;
  if (f.status === 413) {
    return (
      `${head}: the receiver or a proxy in front of it refused a ${postSize(f.bodyBytes)} post; ` +
      `raise its request body limit (nginx: client_max_body_size, default 1m), then mailgw queue retry`
    );
  }
  if (f.status >= 300 && f.status < 400) {
    const to = f.location === null ? "" : ` to ${f.location}`;
    return `${head}${to} (redirects are not followed: put the new address in the rule's url; posts already queued keep the old one)`;
  }
  return head;
}

/** A reply body as one line; HTML (error pages) reduced to its text. */
export function replyLine(body: string, contentType: string | null): string {
  const html = /\bhtml\b/i.test(contentType ?? "") || /^\s*<(!doctype|html)\b/i.test(body);
  return (html ? htmlToText(body, body.length) : body).replace(/\s+/g, " ").trim();
}

/** What to do about a request error that names no fix (certificate trouble), or null. */
export function requestErrorHint(error: string): string | null {
  if (/altname|does not match certificate/i.test(error)) return "use a host name the certificate lists in the rule's url";
  if (/self[- ]signed|unable to (verify|get local issuer)|unknown ca|untrusted/i.test(error)) {
    return (
      "the receiver's certificate is not from a CA this machine trusts: give it one from a public CA, " +
      "or start mailgw with NODE_EXTRA_CA_CERTS=<your CA's PEM file> (README: Webhooks)"
    );
  }
  if (/certificate has expired|cert(ificate)? (is )?not yet valid/i.test(error)) return "renew the receiver's certificate";
  return null;
}

/**
 * A `Retry-After` header (RFC 9110 §10.2.3: delay-seconds or an HTTP-date) as milliseconds from
 * `nowMs`; null when absent or unreadable. A date in the past is 0. Not bounded here: the
 * scheduler caps it (queue/retry.ts).
 */
export function parseRetryAfter(value: string | null, nowMs: number): number | null {
  if (value === null) return null;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Math.min(Number(v), 1e9) * 1000;
  if (!/[a-z]/i.test(v)) return null; // "-5", "1.5": neither form; Date.parse would guess a year
  const at = Date.parse(v);
  return Number.isFinite(at) ? Math.max(0, at - nowMs) : null;
}

/** The post's size in a unit that shows it: a 1.6 KB post was "0.0 MB". */
function postSize(bytes: number): string {
  if (bytes < 1024) return `${bytes}-byte`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}
