/**
 * Two repairs to smtp-server 3.21's command parser (SMTPStream), applied to each one
 * GatewayConnection creates.
 *
 * Over-long command lines answered `500 5.5.2` with the session going on (SPEC §4: "bad input
 * gets a clear SMTP error and the session goes on: … over-long lines"), as Postfix's smtpd
 * does (smtp_get skips the rest of a line past line_length_limit). smtp-server 3.21 instead
 * ends the session with `421 Error: Command line too long` once a line passes its
 * maxCommandLength (node_modules/smtp-server/dist/esm/smtp-stream.js `_commandTooLong`), and
 * drops whatever was pipelined after it in the same read.
 *
 * Memory stays bounded without the library's limit: a partial line (no LF yet) may grow to
 * `maxBytes`; past it the buffered start is dropped and every byte up to the next LF is
 * skipped, then the line is answered. A complete line read in one piece is at most one socket
 * read plus `maxBytes`, and is answered the same way instead of being parsed.
 *
 * Only command mode is touched: the library switches to DATA mode inside `_write`, and a chunk
 * is filtered here only when the parser is in command mode as it starts; the partial-line check
 * needs a chunk without any LF, which can never switch modes (a DATA command ends with one).
 * Commands are handled in order (the library takes the next chunk only once every line of the
 * previous one is answered), so the 500 comes after the replies to the lines before it.
 */
import type { SMTPStream } from "smtp-server/lib/smtp-stream.js";

const LF = 0x0a;

type Done = (err?: Error | null) => void;

export function answerLongLines(parser: SMTPStream, maxBytes: number, answer: () => void): SMTPStream {
  const write = parser._write.bind(parser);
  const command = parser.oncommand.bind(parser);
  let skipping = false;
  // Our bounds replace the library's, which closes the session.
  parser._maxCommandLength = Number.POSITIVE_INFINITY;
  parser.oncommand = (line: Buffer, callback?: () => void): void => {
    if (line.length <= maxBytes) return command(line, callback);
    answer();
    callback?.();
  };
  const filtered = (chunk: Buffer, encoding: BufferEncoding | "buffer", done: Done): void => {
    if (parser._dataMode || parser.isClosed || !chunk || chunk.length === 0) return write(chunk, encoding, done);
    const lf = chunk.indexOf(LF);
    if (skipping) {
      if (lf === -1) return done();
      skipping = false;
      answer();
      return filtered(chunk.subarray(lf + 1), encoding, done);
    }
    if (lf === -1 && parser._remainder.length + chunk.length > maxBytes) {
      parser._remainder = "";
      skipping = true;
      return done();
    }
    write(chunk, encoding, done);
  };
  parser._write = filtered;
  return parser;
}

/**
 * SMTPStream.continue() runs the callback that parses what followed a message's final dot,
 * and only then clears it. When that remainder holds a whole further transaction (MAIL, RCPT,
 * DATA, message, dot: one read from a pipelining client), the callback's own end of DATA sets
 * the next callback synchronously, and continue() then wipes it: every command after the
 * second message (QUIT, the next MAIL) was never answered and the client hung until the idle
 * timeout. Cleared before the call instead; otherwise the library's code.
 */
export function continueAfterData(parser: SMTPStream): SMTPStream {
  parser.continue = (): void => {
    const next = parser._continueCallback;
    if (typeof next !== "function") {
      parser._continueCallback = true;
      return;
    }
    parser._continueCallback = false;
    next();
  };
  return parser;
}
