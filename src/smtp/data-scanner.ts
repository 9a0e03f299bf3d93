/**
 * A faster DATA scanner for smtp-server 3.21's SMTPStream: the library looks for the final
 * `CRLF.CRLF` and for escape dots with a JavaScript loop over every byte of every chunk (the
 * biggest single CPU cost of receiving a 100 KB message). This is the same algorithm with the
 * same decisions, but it jumps between `LF .` pairs with the native Buffer.indexOf: only a
 * dot at the start of a line is ever looked at, exactly as in the library's loop
 * (node_modules/smtp-server/dist/esm/smtp-stream.js `_feedDataStream`). Everything else
 * (start-of-DATA checks, the 4 bytes kept across chunks, drain handling, ending DATA mode)
 * is the library's own code path, unchanged.
 *
 * Trusts nothing in the bytes: bare-LF dots never end DATA (the full `CRLF.CRLF` is compared),
 * as in the library. Failure: none of its own; the library's callbacks carry on.
 */
import type { SMTPStream } from "smtp-server/lib/smtp-stream.js";

type Done = (err?: Error | null) => void;

const END_SEQUENCE = Buffer.from("\r\n.\r\n");
const LINE_START_DOT = Buffer.from("\n.");
const START_TERMINATOR = Buffer.from(".\r\n");

/** Replaces `parser._feedDataStream` with the indexOf-based scanner (same behaviour). */
export function useFastDataScanner(parser: SMTPStream): SMTPStream {
  parser._feedDataStream = (chunk: Buffer, done: Done): void => feedDataStream(parser, chunk, done);
  return parser;
}

function feedDataStream(parser: SMTPStream, input: Buffer, done: Done): void {
  const dataStream = parser._dataStream;
  if (!dataStream) return done();
  let chunk = input;
  if (parser._lastBytes && parser._lastBytes.length) {
    chunk = Buffer.concat([parser._lastBytes, chunk], parser._lastBytes.length + chunk.length);
    parser._lastBytes = false;
  }
  let len = chunk.length;
  if (parser._atDataStart && len >= 3 && chunk.subarray(0, 3).equals(START_TERMINATOR)) {
    parser._endDataMode(false, chunk.subarray(3), done);
    return;
  }
  if (parser._atDataStart && len >= 2 && chunk[0] === 0x2e && chunk[1] === 0x2e) {
    chunk = chunk.subarray(1);
    len--;
    parser._atDataStart = false;
  }
  // The library checks every i in [2, len - 3] for chunk[i-1] = LF, chunk[i] = '.'.
  let from = 1;
  while (true) {
    const lf = chunk.indexOf(LINE_START_DOT, from);
    const i = lf + 1;
    if (lf === -1 || i >= len - 2) break;
    if (i >= 2 && chunk.subarray(i - 2, i + 3).equals(END_SEQUENCE)) {
      const buf = chunk.subarray(0, i);
      parser._countDataBytes(buf.length);
      parser._endDataMode(buf, chunk.subarray(i + 3), done);
      return;
    }
    if (chunk[i + 1] === 0x2e) {
      const buf = chunk.subarray(0, i);
      parser._lastBytes = false;
      parser._countDataBytes(buf.length);
      if (dataStream.writable) dataStream.write(buf);
      const rest = chunk.subarray(i + 1);
      setImmediate(() => parser._feedDataStream(rest, done));
      return;
    }
    from = i;
  }
  emitAllButTail(parser, chunk, done);
}

/** Keeps the last 4 bytes (a terminator may straddle chunks) and emits the rest. */
function emitAllButTail(parser: SMTPStream, chunk: Buffer, done: Done): void {
  const dataStream = parser._dataStream;
  parser._lastBytes = chunk.length < 4 ? chunk : chunk.subarray(chunk.length - 4);
  if (!dataStream || parser._lastBytes.length >= chunk.length) return done();
  const buf = chunk.subarray(0, chunk.length - parser._lastBytes.length);
  parser._countDataBytes(buf.length);
  if (!dataStream.writable) return done();
  const handled = dataStream.write(buf);
  if (handled || dataStream.destroyed) return done();
  const onDrain = (): void => {
    dataStream.removeListener("drain", onDrain);
    dataStream.removeListener("close", onDrain);
    done();
  };
  dataStream.once("drain", onDrain);
  dataStream.once("close", onDrain);
}
