/**
 * Whether a forward would be refused as a mail loop by the relay: a Postfix smarthost counts the
 * Received: fields of what it is handed, its own included, and refuses the message when they
 * reach hopcount_limit (default 50, `554 5.4.0 Error: too many hops`). A forwarded copy carries
 * the client's fields, mailgw's and the relay's own, so one that came in with 48 to 50 of them
 * passed serve's loop check (more than 50, SPEC §4), got 250, and failed at the relay for good.
 * Refused at DATA instead (554 5.4.6, the loop check's reply), the sender gets the bounce.
 * Pure; the count is the client's header fields as serve's loop check counted them.
 */

/** Postfix's hopcount_limit default, also SPEC §4's loop limit. */
export const RELAY_HOPCOUNT_LIMIT = 50;
/** After `554 5.4.6 `: as serve's loop check words it (smtp/received-header.ts LOOP_REPLY). */
export const FORWARD_LOOP_TEXT = "Too many hops (Received headers), mail loop suspected";
/** Received: fields a forward gains before the relay's check: mailgw's and the relay's own. */
const ADDED_ON_THE_WAY = 2;

export function forwardWouldLoop(clientReceivedHeaders: number): boolean {
  return clientReceivedHeaders + ADDED_ON_THE_WAY >= RELAY_HOPCOUNT_LIMIT;
}
