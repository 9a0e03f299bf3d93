/**
 * Why the gateway itself refused a client (not a rule's reject, which is the `reject` action):
 * the `refused:<reason>` counters behind `mailgw_smtp_refusals_total` and the stats page, so an
 * admin sees relaying attempts, oversize mail or a sender hitting the rate limit without reading
 * logs (what pflogsumm's "reject detail" gives a Postfix admin). Read from the reply the client
 * got, so every place that refuses is counted the same way; the texts are this gateway's own
 * (recipient-policy.ts, envelope-handlers.ts, limits.ts, received-header.ts, connection.ts,
 * admission.ts, front.ts), and test/smtp/refusals.test.ts holds them to it.
 */
export const REFUSAL_REASONS = [
  "relay_denied",
  "too_many_recipients",
  "rate_limited",
  "tls_required",
  "too_big",
  "mail_loop",
  "not_allowed",
  "too_many_connections",
  "too_many_errors",
  "insufficient_storage",
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

export function isRefusalReason(s: string): s is RefusalReason {
  return (REFUSAL_REASONS as readonly string[]).includes(s);
}

/** `reply`: what followed the code on the wire, starting with the enhanced code (`5.7.1 Relaying denied`). */
export function refusalReason(code: number, reply: string): RefusalReason | null {
  switch (code) {
    case 550:
      return reply.startsWith("5.7.1 Relaying denied") ? "relay_denied" : null;
    case 452:
      if (reply.startsWith("4.3.1 ")) return "insufficient_storage";
      return reply.startsWith("4.5.3 ") ? "too_many_recipients" : null;
    case 451:
      return reply.startsWith("4.7.1 ") ? "rate_limited" : null;
    case 530:
      return "tls_required";
    case 552:
      return "too_big";
    case 554:
      if (reply.startsWith("5.4.6 ")) return "mail_loop";
      return reply.startsWith("5.7.1 ") && reply.endsWith(" Access denied") ? "not_allowed" : null;
    case 421:
      if (/ Too many connections\b/.test(reply)) return "too_many_connections";
      return / too many (errors|unrecognized commands)/.test(reply) ? "too_many_errors" : null;
    default:
      return null;
  }
}

/** The same for a whole reply line (`554 5.7.1 mx.example Access denied`), as a refused connection gets. */
export function refusalReasonOfLine(line: string): RefusalReason | null {
  const m = /^(\d{3})[ -](.*)$/s.exec(line);
  return m?.[1] && m[2] !== undefined ? refusalReason(Number(m[1]), m[2]) : null;
}
