/**
 * A message body read as commands. A client that sends the message without waiting for the
 * 354 (RFC 2920 §3.1 forbids it, some scripts and bots do it) has its body read as command
 * lines when DATA is refused (no valid recipient, 503): a body holding `RSET`, `MAIL FROM:`,
 * `RCPT TO:`, `DATA` and a message got that message accepted with an envelope the body chose
 * (a web form's text sent by such a client to a mistyped recipient could send a "CEO" mail to
 * any address of ours). Two signs end the session with 421 before any such line runs:
 *
 *  - a line that came in the same read as the refused DATA (it was sent before the client could
 *    see the refusal): Postfix's smtpd_forbid_unauth_pipelining, its default since 3.9
 *    (`554 5.5.0 Error: SMTP protocol synchronization`);
 *  - an unknown command whose first word is a header field name and its colon (`Subject:`,
 *    `From:`), whenever it comes: Postfix's "non-SMTP command", which it has answered with a
 *    hang-up for many versions (`221 2.7.0 Error: I can break rules, too. Goodbye.`).
 *
 * 421, not Postfix's 554 or 221: the client reads the reply as the answer to its message, and
 * a transaction refused for a temporary reason (a rate-limited MAIL) must be retried, not bounced.
 * Nothing else changes: an unknown verb still gets 500 and the session goes on (SPEC §4).
 */

/** `Name:` as the first word: printable ASCII but ':' up to the colon (Postfix's is_header). */
const HEADER_WORD = /^[\x21-\x39\x3b-\x7e]+:/;

const QUIT = /^QUIT(?:\s|$)/i;

/** The reply text (after 421) for a line sent with the refused DATA. */
export const PIPELINED_AFTER_REFUSED_DATA_TEXT = "4.5.0 Error: SMTP protocol synchronization (input sent after a refused DATA), closing connection";
/** The reply text (after 421) for a header line sent as a command. */
export const HEADER_AS_COMMAND_TEXT = "4.5.0 Error: message header sent as a command, closing connection";

export function isHeaderLine(command: Buffer): boolean {
  return HEADER_WORD.test(command.toString("latin1", 0, Math.min(command.length, 1000)));
}

/** One per connection: remembers a refused DATA until the read it came in is done. */
export class BodyAsCommands {
  private afterRefusedData = false;

  /**
   * DATA was answered without 354. The parser hands on the lines of the same read synchronously
   * once the DATA handler calls back (smtp-stream.js readLine), before any microtask runs; a line
   * the client sent after reading the refusal comes in a later read.
   */
  dataRefused(): void {
    this.afterRefusedData = true;
    queueMicrotask(() => {
      this.afterRefusedData = false;
    });
  }

  /** The 421 text that ends the session before `command` runs, or null when it is a command. */
  refusal(command: Buffer): string | null {
    if (this.afterRefusedData) {
      this.afterRefusedData = false;
      // QUIT ends the session anyway, with the 221 the client asked for.
      if (!QUIT.test(command.toString("latin1", 0, Math.min(command.length, 16)))) return PIPELINED_AFTER_REFUSED_DATA_TEXT;
    }
    return isHeaderLine(command) ? HEADER_AS_COMMAND_TEXT : null;
  }
}
