/**
 * The rows a classified message is stored as: its `messages` row and the deliveries its
 * decision queues (forward: held while no relay is configured; webhook). Pure: the intake
 * commits them (act/intake.ts).
 */
import type { MessageRow, NewDelivery } from "../store/messages.ts";
import type { Decision, MessageFacts } from "../types.ts";

export function messageRow(id: string, receivedAt: number, facts: MessageFacts, d: Decision, status: MessageRow["status"]): MessageRow {
  return {
    id, receivedAt, status,
    clientIp: facts.clientIp, helo: facts.helo, tls: facts.tls, mailFrom: facts.mailFrom, recipients: facts.rcpt,
    subject: facts.subject, size: facts.size, rule: d.rule, category: d.category, action: d.action, archive: d.archive,
  };
}

/**
 * `createdAt` is now, just before the rows' commit, not the DATA start: the sweep releases held
 * back deliveries created over a minute ago, and a message that took longer than that to arrive
 * must not be released (and claimed, before its file exists) in the moment between its commit
 * and its syncfs.
 */
export function deliveriesFor(row: MessageRow, d: Decision, relayConfigured: boolean, createdAt: number): NewDelivery[] {
  const base = { messageId: row.id, rule: d.rule, category: d.category, createdAt };
  if (d.action === "forward") return [{ ...base, kind: "forward", target: d.forwardTo, state: relayConfigured ? "queued" : "held" }];
  if (d.action === "webhook" && d.url !== null) return [{ ...base, kind: "webhook", target: d.url, state: "queued" }];
  return [];
}
