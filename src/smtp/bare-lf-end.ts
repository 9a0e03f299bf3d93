/**
 * A client that ends DATA with a bare-LF dot line (`\n.\n`: a shell script's printf, a broken
 * appliance) believes its message is sent and waits for the reply. mailgw never ends a message
 * there (only `CRLF.CRLF` does, against SMTP smuggling, as Postfix 3.9's default
 * `smtpd_forbid_bare_newline = normalize`), so the session used to sit until the 120 s idle
 * timeout and answer a bare `421 4.4.2 … Timeout`: the client retried the same way, and after
 * days bounced the mail with nothing in its log, the bounce or mailgw's log saying why.
 *
 * This watches the bytes of a DATA phase as they arrive on the wire (before dot-unstuffing, so
 * a stuffed `\n..\n` is not mistaken for one). When they stop right after a dot line that a
 * bare LF ends or starts (`\n.\n`, `\r\n.\n`, `x\n.\r\n`, or `.\n` as the whole data) and
 * nothing more comes for limits.ts BARE_LF_END_WAIT_MS, the client is told so in the 421, and the session
 * log line says so too. The idle timeout, should it come first, says the same. The wait is
 * short because no conforming client stops there: a dot line must be stuffed (`..`) unless it
 * ends the data, and a client that sends more keeps the session going as before (the timer
 * restarts at every chunk). The reply is temporary (421, nothing stored), so a client that only
 * paused there loses nothing. Nothing here ever ends a message: the smuggling defence stays
 * the scanner's (data-scanner.ts).
 */
import type { SMTPStream } from "smtp-server/lib/smtp-stream.js";

/** The 421's text after the server's name: what went wrong and what ends a message. */
export const BARE_LF_END_REPLY =
  "Timeout waiting for <CR><LF>.<CR><LF>: the data ends with a \".\" line ending in bare <LF>, which does not end a message - closing connection";

/** The session log line's `error` for such a session. */
export const BARE_LF_END_ERROR = "the client ended DATA with a bare-LF dot line (\\n.\\n), not <CR><LF>.<CR><LF>; mailgw closed the connection after waiting for the real end";

/** Enough of the data's last bytes to see `X\n.\r\n` (the byte before the LF decides). */
const TAIL_BYTES = 5;

/** A dot line at the end of `tail` (the data's last TAIL_BYTES, or all of it) that a bare LF ends or starts. */
export function endsWithBareLfDotLine(tail: string): boolean {
  // `^` is the data's start only when the tail is shorter than TAIL_BYTES (all the data so far).
  const atStart = tail.length < TAIL_BYTES;
  if (/\n\.\n$/.test(tail) || (atStart && tail === ".\n")) return true;
  return /[^\r]\n\.\r\n$/.test(tail) || (atStart && tail === "\n.\r\n");
}

/** Each parser's watch (a connection gets a new parser at STARTTLS). */
const watches = new WeakMap<SMTPStream, BareLfEndWatch>();

export class BareLfEndWatch {
  /** The watch on `parser`, if one was made. */
  static of(parser: SMTPStream | false | undefined): BareLfEndWatch | undefined {
    return parser ? watches.get(parser) : undefined;
  }

  private tail = "";
  private timer: ReturnType<typeof setTimeout> | null = null;

  /**
   * Wraps `parser._feedDataStream` (every wire chunk of a DATA phase passes it once): `stalled`
   * runs when the data has rested at a bare-LF dot line for `waitMs` while still in DATA.
   */
  constructor(
    private readonly parser: SMTPStream,
    private readonly waitMs: number,
    private readonly stalled: () => void,
  ) {
    watches.set(parser, this);
    const feed = parser._feedDataStream.bind(parser);
    parser._feedDataStream = (chunk, done) => {
      this.see(chunk);
      feed(chunk, done);
      if (parser._dataMode && this.atBareLfEnd()) this.arm();
    };
  }

  /** A new DATA phase: nothing seen yet. */
  start(): void {
    this.stop();
    this.tail = "";
  }

  /** DATA ended (the final dot, or the stream closed). */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Whether the DATA phase under way rests at a bare-LF dot line. */
  atBareLfEnd(): boolean {
    return this.parser._dataMode && endsWithBareLfDotLine(this.tail);
  }

  private see(chunk: Buffer): void {
    this.stop();
    const last = chunk.length >= TAIL_BYTES ? chunk.toString("latin1", chunk.length - TAIL_BYTES) : this.tail + chunk.toString("latin1");
    this.tail = last.slice(-TAIL_BYTES);
  }

  private arm(): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.atBareLfEnd()) this.stalled();
    }, this.waitMs);
    this.timer.unref();
  }
}
