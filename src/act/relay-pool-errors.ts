/**
 * The errors the relay pool (relay-pool.ts) settles messages with, beside nodemailer's own: each
 * carries the `code` (and `responseCode`) that relay.ts and the queue classify by.
 */

/** Error codes for a session that died under us (nodemailer's isTransientError). */
export const TRANSIENT_CODES = new Set(["ECONNECTION", "ESOCKET", "ETIMEDOUT"]);

export function poolError(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

/** Marks the failure of a message the pool never started because it was closed. */
const POOL_CLOSED = Symbol("relay pool closed");

export function poolClosedError(): Error {
  return Object.assign(poolError("relay connection pool was closed", "ECONNECTION"), { [POOL_CLOSED]: true });
}

/** True for a message a closed pool failed before any of it was sent (safe to send elsewhere). */
export function isPoolClosedError(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { [POOL_CLOSED]?: boolean })[POOL_CLOSED] === true;
}

/** The relay cannot take this envelope: permanent, like Postfix's 5.6.7 bounce (RFC 6531 3.2). */
export function smtpUtf8Missing(address: string): Error {
  const message = `553 5.6.7 the relay does not offer SMTPUTF8, which the address ${address} needs (its local part is not ASCII): use a relay that supports SMTPUTF8, then \`mailgw queue retry\``;
  return Object.assign(new Error(message), { code: "EENVELOPE", responseCode: 553, command: "MAIL FROM" });
}

/**
 * The message as it would be sent (`sent` bytes) is over the relay's SIZE `limit`, though it was
 * within it as received: the 7-bit conversion for a relay without 8BITMIME (quoted-printable,
 * up to three times the 8-bit text) or broken long lines made it grow. Permanent, as the relay's
 * own 552 5.3.4 would be.
 */
export function grownPastSize(sent: number, received: number, limit: number, converted: boolean): Error {
  const how = converted ? "as converted to 7-bit for a relay without 8BITMIME" : "with its lines over 998 octets broken";
  const fix = converted ? "use a relay that offers 8BITMIME or raise its limit" : "raise the relay's limit";
  const message = `552 5.3.4 the message is ${sent} bytes ${how} (${received} as received), over the relay's SIZE limit ${limit}: ${fix}, then \`mailgw queue retry\``;
  // No `code`: classifyRelayError keeps the text as it is (a 5xx to MAIL FROM: permanent).
  return Object.assign(new Error(message), { responseCode: 552, command: "MAIL FROM" });
}

/** Like AbortSignal.timeout's reason, so the attempt reads "timed out" either way. */
export function deadlineError(): Error {
  return Object.assign(new Error("The operation timed out."), { name: "TimeoutError" });
}
