/**
 * What the connection class (connection.ts) notes of a session for the handlers that run after
 * the library has parsed a command (envelope-handlers.ts, session-end.ts): the command as the
 * client's bytes, before smtp-server decodes A-labels or strips source routes, and whether a
 * trusted proxy opened the session for itself. Weakly held: gone with the session.
 */
import type { SMTPServerSession } from "smtp-server";

const rcptArguments = new WeakMap<SMTPServerSession, string>();
const addressCommands = new WeakMap<SMTPServerSession, Buffer>();
/** Sessions a trusted proxy opened for itself (PROXY LOCAL, or its own address): its health checks. */
const proxyOwnSessions = new WeakSet<SMTPServerSession>();

export function noteRcptArgument(session: SMTPServerSession, argument: string): void {
  rcptArguments.set(session, argument);
}

export function noteAddressCommand(session: SMTPServerSession, command: Buffer): void {
  addressCommands.set(session, command);
}

export function markProxyOwnSession(session: SMTPServerSession): void {
  proxyOwnSessions.add(session);
}

export function isProxyOwnSession(session: SMTPServerSession): boolean {
  return proxyOwnSessions.has(session);
}

/** The RCPT argument (`TO:<...> PARAMS`) of the command being handled, before any parsing. */
export function lastRcptArgument(session: SMTPServerSession): string {
  return rcptArguments.get(session) ?? "";
}

/** The MAIL or RCPT command being handled, as the client's bytes (smtp-server decodes A-labels). */
export function lastAddressCommand(session: SMTPServerSession): Buffer | undefined {
  return addressCommands.get(session);
}

/** The address of a RCPT argument (`TO:<a@b> NOTIFY=NEVER`) as written, for the log; the argument itself when it has no `<…>`. */
export function rcptAddress(argument: string): string {
  const m = /<([^>]*)>/.exec(argument);
  return (m?.[1] ?? argument.replace(/^\s*TO\s*:\s*/i, "")).trim();
}
