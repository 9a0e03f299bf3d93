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
  /** The first `limit` bytes, as one allocation. */
  prefix(limit: number): Uint8Array;
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

  prefix(limit: number): Uint8Array {
    return prefixOf(this.message, limit);
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
