/**
 * A received message as the SMTP layer writes it: `IncomingMessage` is where DATA goes as it
 * arrives (our `Received:` header first, then the chunks in order). The gateway's pipeline
 * gives an IncomingFile (spool/incoming-file.ts: straight into the spool file); any other
 * MessageSink gets a MessageCollector, which keeps the parts in memory and joins them once.
 * Also the helpers to join parts or take a prefix without copying more than needed.
 * Trusts: `size` equals the sum of the part lengths (checked by `joinParts`). Failure: none.
 */
export type { OwningMessageSink } from "./incoming-file.ts";

export interface MessageBytes {
  parts: Uint8Array[];
  size: number;
}

/** Where the bytes of a message go while it is received. */
export interface IncomingMessage {
  /** Queues bytes; false when the sender should wait for `drained()` (pause the socket). */
  write(bytes: Uint8Array): boolean;
  drained(): Promise<void>;
  /** No more bytes; resolves when all are stored, rejects when storing failed. */
  end(): Promise<void>;
  /** Discards the message (nothing kept). Never throws. */
  abort(): Promise<void>;
  /**
   * The header section: the first bytes through the first blank line (all of the header
   * block), at most `limit`; not the body of a big message.
   */
  headerSection(limit: number): Uint8Array;
}

/** An IncomingMessage held in memory (for sinks that take the whole message at once). */
export class MessageCollector implements IncomingMessage {
  private message: MessageBytes = { parts: [], size: 0 };

  write(bytes: Uint8Array): boolean {
    this.message.parts.push(bytes);
    this.message.size += bytes.byteLength;
    return true;
  }

  drained(): Promise<void> {
    return Promise.resolve();
  }

  end(): Promise<void> {
    return Promise.resolve();
  }

  abort(): Promise<void> {
    this.message = { parts: [], size: 0 };
    return Promise.resolve();
  }

  headerSection(limit: number): Uint8Array {
    return prefixOf(this.message, headerEndOf(this.message, limit));
  }

  /** The whole message, joined once; the collector lets go of it. */
  take(): Uint8Array {
    const joined = joinParts(this.message);
    this.message = { parts: [], size: 0 };
    return joined;
  }
}

/**
 * The parts as one Uint8Array owning its whole ArrayBuffer (so it can be transferred to a
 * worker): the only part when it already is one, else ONE new allocation.
 */
export function joinParts(message: MessageBytes): Uint8Array {
  const only = message.parts.length === 1 ? message.parts[0] : undefined;
  if (only && only.byteOffset === 0 && only.byteLength === only.buffer.byteLength) return only;
  // allocUnsafeSlow: never a slice of Buffer's shared pool (it must own its ArrayBuffer).
  const joined = Buffer.allocUnsafeSlow(message.size);
  let at = 0;
  for (const part of message.parts) {
    joined.set(part, at);
    at += part.byteLength;
  }
  if (at !== message.size) throw new Error(`message parts hold ${at} bytes, not ${message.size}`);
  return joined;
}

/** The first `limit` bytes of the message (or all of it), as one new allocation. */
export function prefixOf(message: MessageBytes, limit: number): Uint8Array {
  // allocUnsafeSlow: owns its ArrayBuffer (transferable) and skips zero-filling what is overwritten.
  const size = Math.min(limit, message.size);
  const prefix = new Uint8Array(Buffer.allocUnsafeSlow(size).buffer, 0, size);
  let at = 0;
  for (const part of message.parts) {
    if (at >= prefix.byteLength) break;
    const take = Math.min(part.byteLength, prefix.byteLength - at);
    prefix.set(take === part.byteLength ? part : part.subarray(0, take), at);
    at += take;
  }
  return prefix;
}

const BLANK_LINES = [Buffer.from("\n\n"), Buffer.from("\n\r\n")];
const EMPTY = Buffer.alloc(0);

/** End (exclusive) of the first `\n\n` or `\n\r\n` in `bytes`, or -1. */
function blankLineEnd(bytes: Buffer): number {
  let end = -1;
  for (const blank of BLANK_LINES) {
    const at = bytes.indexOf(blank);
    if (at >= 0 && (end < 0 || at + blank.length < end)) end = at + blank.length;
  }
  return end;
}

/**
 * Finds where the header section ends in bytes fed in order: the end of the first `\n\n` or
 * `\n\r\n` (either is a blank line for splitHeaderBlock, which may find an earlier one — a
 * line of several CRs, or of spaces with text after it — but never a later one, so the whole
 * header block is before it), also
 * across the boundary between two feeds. Each byte is looked at once.
 */
export class HeaderEndFinder {
  /** The end (exclusive) once found, else -1. */
  end = -1;
  /** Bytes fed so far. */
  fed = 0;
  private carry: Buffer = EMPTY;

  /** Feeds the next bytes; returns `end`. */
  feed(part: Uint8Array): number {
    if (this.end >= 0) return this.end;
    const bytes = Buffer.from(part.buffer, part.byteOffset, part.byteLength);
    // A blank line across the boundary ends within this part's first two bytes.
    const joint = blankLineEnd(Buffer.concat([this.carry, bytes.subarray(0, 2)]));
    const inside = joint > this.carry.length ? joint - this.carry.length : blankLineEnd(bytes);
    if (inside >= 0) return (this.end = this.fed + inside);
    const tail = Buffer.concat([this.carry, bytes.subarray(Math.max(0, bytes.length - 2))]);
    this.carry = tail.subarray(Math.max(0, tail.length - 2));
    this.fed += bytes.length;
    return -1;
  }
}

/** Where the header section ends within the first `limit` bytes (HeaderEndFinder), else `limit` (or the size). */
export function headerEndOf(message: MessageBytes, limit: number): number {
  const max = Math.min(limit, message.size);
  const finder = new HeaderEndFinder();
  for (const part of message.parts) {
    if (finder.fed >= max) break;
    if (finder.feed(part) >= 0) return Math.min(finder.end, max);
  }
  return max;
}
