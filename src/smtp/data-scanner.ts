/**
 * A faster DATA scanner for smtp-server 3.21's SMTPStream: the library looks for the final
 * `CRLF.CRLF` and for escape dots with a JavaScript loop over every byte of every chunk (the
 * biggest single CPU cost of receiving a 100 KB message). This is the same algorithm with the
 * same decisions, but it jumps between `LF .` pairs with the native Buffer.indexOf: only a
 * dot at the start of a line is ever looked at, exactly as in the library's loop
 * (node_modules/smtp-server/dist/esm/smtp-stream.js `_feedDataStream`). Everything else
 * (start-of-DATA checks, the 4 bytes kept across chunks, drain handling, ending DATA mode)
 * is the library's own code path, unchanged — except that:
 *  - a big chunk is not copied into one joined with the 4 bytes held back from the previous
 *    chunk (feedAfterTail): the library's join copied every byte of a message once more;
 *  - escape dots are removed in one pass over the chunk (Unstuffer), the pieces between them
 *    copied into one output buffer written once (with backpressure). The library wrote each
 *    piece and went on with the rest of the chunk in a setImmediate, for every escape dot: 20 MB
 *    of `..` lines cost ~17 times the CPU of 20 MB without the dots. The library's restart
 *    after an escape dot scans the rest from its third byte; the two bytes skipped (the kept
 *    dot and the byte after it) can never be a line-start dot, so going on in the same chunk
 *    decides the same. The bytes held back for the next chunk still come from after the last
 *    escape dot only, as in the library (its restart's chunk was that rest).
 *
 * Trusts nothing in the bytes: bare-LF dots never end DATA (the full `CRLF.CRLF` is compared),
 * as in the library. Failure: none of its own; the library's callbacks carry on.
 */
import type { SMTPStream } from "smtp-server/lib/smtp-stream.js";

type Done = (err?: Error | null) => void;
type DataStream = NonNullable<SMTPStream["_dataStream"]>;

const END_SEQUENCE = Buffer.from("\r\n.\r\n");
const LINE_START_DOT = Buffer.from("\n.");
const START_TERMINATOR = Buffer.from(".\r\n");
const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;

/** Pieces between escape dots up to this long are copied by a loop rather than Buffer.copy. */
const SHORT_PIECE = 32;
/**
 * An input up to this size is joined to the bytes held back from the previous chunk, as the
 * library does (a copy of a few bytes); a bigger one is never copied (feedAfterTail).
 */
const JOIN_MAX_BYTES = 256;
/**
 * feedAfterTail needs an input longer than the bridge's 4 bytes and than the 4 bytes then held
 * back, so that what is held back comes from the input alone (the tail is emitted at once).
 */
const BRIDGE_MIN_INPUT = 8;

/** Replaces `parser._feedDataStream` with the indexOf-based scanner (same behaviour). */
export function useFastDataScanner(parser: SMTPStream, opts: { joinMaxBytes?: number } = {}): SMTPStream {
  const joinMax = opts.joinMaxBytes ?? JOIN_MAX_BYTES;
  parser._feedDataStream = (chunk: Buffer, done: Done): void => feedDataStream(parser, chunk, done, joinMax);
  return parser;
}

function feedDataStream(parser: SMTPStream, input: Buffer, done: Done, joinMax: number): void {
  const dataStream = parser._dataStream;
  if (!dataStream) return done();
  const tail = parser._lastBytes && parser._lastBytes.length ? parser._lastBytes : null;
  parser._lastBytes = false;
  if (tail === null) return scan(parser, input, done);
  // The library joins every chunk to the held-back tail: a full copy of each chunk.
  if (parser._atDataStart || input.length <= Math.max(joinMax, BRIDGE_MIN_INPUT)) return scan(parser, Buffer.concat([tail, input], tail.length + input.length), done);
  if (!feedAfterTail(parser, dataStream, tail, input, done)) scan(parser, input, done);
}

/**
 * The held-back `tail` (1-4 bytes) followed by `input`, decided as the library decides on
 * their concatenation, without making it: a dot whose 5-byte window (`CRLF.CRLF`) touches the
 * tail is at most one byte into `input`, so it is found in a bridge of the tail and input's
 * first 4 bytes; every later one lies in `input` alone, which the caller scans once the tail
 * is emitted (same bytes, same order, same counts). True when the bridge ended DATA or found
 * an escape dot.
 */
function feedAfterTail(parser: SMTPStream, dataStream: DataStream, tail: Buffer, input: Buffer, done: Done): boolean {
  const held = tail.length;
  const bridge = Buffer.concat([tail, input.subarray(0, 4)]);
  // The library's loop looks at dots from index 2 of the joined chunk.
  for (let i = 2; i <= held + 1; i++) {
    if (bridge[i] !== DOT || bridge[i - 1] !== LF) continue;
    const buf = bridge.subarray(0, i);
    if (bridge.subarray(i - 2, i + 3).equals(END_SEQUENCE)) {
      parser._countDataBytes(buf.length);
      parser._endDataMode(buf, input.subarray(i + 3 - held), done);
      return true;
    }
    if (bridge[i + 1] === DOT) {
      parser._countDataBytes(buf.length);
      if (dataStream.writable) dataStream.write(buf);
      const rest = i + 1 >= held ? input.subarray(i + 1 - held) : Buffer.concat([tail.subarray(i + 1), input]);
      scan(parser, rest, done);
      return true;
    }
  }
  parser._countDataBytes(held);
  if (dataStream.writable) dataStream.write(tail);
  return false;
}

/** The library's scan of one chunk (after joining), with indexOf, escape dots dropped in one pass. */
function scan(parser: SMTPStream, input: Buffer, done: Done): void {
  const dataStream = parser._dataStream;
  if (!dataStream) return done();
  let chunk = input;
  let len = chunk.length;
  if (parser._atDataStart && len >= 3 && chunk.subarray(0, 3).equals(START_TERMINATOR)) {
    parser._endDataMode(false, chunk.subarray(3), done);
    return;
  }
  if (parser._atDataStart && len >= 2 && chunk[0] === DOT && chunk[1] === DOT) {
    chunk = chunk.subarray(1);
    len--;
    parser._atDataStart = false;
  }
  const kept = new Unstuffer(chunk);
  // The library checks every i in [2, len - 3] for chunk[i-1] = LF, chunk[i] = '.'.
  let from = 1;
  while (true) {
    const lf = chunk.indexOf(LINE_START_DOT, from);
    const i = lf + 1;
    if (lf === -1 || i >= len - 2) break;
    // chunk[i - 1..i] is `LF .`: the rest of CRLF.CRLF compared byte by byte, without the
    // view the library makes at every line-start dot.
    if (chunk[i - 2] === CR && chunk[i + 1] === CR && chunk[i + 2] === LF) {
      const buf = kept.upTo(i);
      parser._countDataBytes(buf.length);
      parser._endDataMode(buf, chunk.subarray(i + 3), done);
      return;
    }
    if (chunk[i + 1] === DOT) {
      kept.drop(i);
      // The kept dot at i + 1 follows a dot: no line starts there.
      from = i + 2;
      continue;
    }
    from = i;
  }
  emitAllButTail(parser, chunk, kept, done);
}

/**
 * What is kept of one chunk: the bytes between the escape dots dropped so far, copied into one
 * buffer; a view of the chunk itself while no dot was dropped (the common case costs no copy).
 */
class Unstuffer {
  private out: Buffer | null = null;
  private length = 0;
  /** Where the bytes not yet kept start: after the last escape dot dropped. */
  from = 0;

  constructor(private readonly chunk: Buffer) {}

  drop(dot: number): void {
    this.out ??= Buffer.allocUnsafe(this.chunk.length);
    this.keep(dot);
    this.from = dot + 1;
  }

  /** Everything kept before `end`. */
  upTo(end: number): Buffer {
    if (this.out === null) return this.chunk.subarray(this.from, end);
    this.keep(end);
    this.from = end;
    return this.out.subarray(0, this.length);
  }

  /** Copies from `from` to `end`; a short piece (a line of `..`) byte by byte, cheaper than a native call. */
  private keep(end: number): void {
    const out = this.out!;
    if (end - this.from > SHORT_PIECE) {
      this.length += this.chunk.copy(out, this.length, this.from, end);
      return;
    }
    for (let at = this.from; at < end; at++) out[this.length++] = this.chunk[at]!;
  }
}

/**
 * Keeps the last 4 bytes (a terminator may straddle chunks) and emits the rest. The bytes kept
 * come from after the last escape dot only: the library rescanned from there, so a dot it
 * already decided on is never looked at twice. They are a copy: a view would hold the whole
 * socket chunk until the next one arrives, long enough under load for a young collection to
 * promote it (then only a full collection frees it).
 */
function emitAllButTail(parser: SMTPStream, chunk: Buffer, kept: Unstuffer, done: Done): void {
  const dataStream = parser._dataStream;
  const tailStart = Math.max(kept.from, chunk.length - 4);
  parser._lastBytes = Buffer.from(chunk.subarray(tailStart));
  const buf = kept.upTo(tailStart);
  if (!dataStream || buf.length === 0) return done();
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
