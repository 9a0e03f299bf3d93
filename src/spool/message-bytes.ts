/**
 * A received message as the SMTP layer hands it over: its byte parts in order (our
 * `Received:` header, then the DATA chunks as they came off the socket) and the total size.
 * Big messages stay in parts so they are never copied whole when nothing needs them
 * contiguous: the spool writes the parts with one writev, a header-only parse reads a
 * prefix. Whoever receives a MessageBytes owns it (it may empty `parts` to free memory early).
 * Trusts: `size` equals the sum of the part lengths (checked by `join`). Failure: none.
 */
import type { Envelope, MessageSink, ReceiveOutcome } from "../types.ts";

export interface MessageBytes {
  parts: Uint8Array[];
  size: number;
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
  const prefix = new Uint8Array(Math.min(limit, message.size));
  let at = 0;
  for (const part of message.parts) {
    if (at >= prefix.byteLength) break;
    const take = Math.min(part.byteLength, prefix.byteLength - at);
    prefix.set(take === part.byteLength ? part : part.subarray(0, take), at);
    at += take;
  }
  return prefix;
}

/** A MessageSink that can also take a message in parts, owning it (the gateway's pipeline). */
export interface OwningMessageSink extends MessageSink {
  receiveOwned(message: MessageBytes, envelope: Envelope): Promise<ReceiveOutcome>;
}

export function isOwningSink(sink: MessageSink): sink is OwningMessageSink {
  return typeof (sink as Partial<OwningMessageSink>).receiveOwned === "function";
}
