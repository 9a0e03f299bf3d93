/**
 * A message being received, written to its spool file AS IT ARRIVES (like Postfix's queue
 * file): `spool/<id>.tmp` is created at DATA start, our `Received:` header and then every
 * DATA chunk are appended with async writes, so the main thread never holds a whole big
 * message — only the chunks not yet written (at most about INCOMING_HIGH_WATER_BYTES: above
 * it `write` returns false and the caller pauses the socket until `drained()`) and the first
 * `prefixLimit` bytes (the header block the classifier reads; for a small message, all of it).
 * Accepted: `install()` (fsync when asked, close, rename to `<id>.eml`; made durable by the
 * intake's group flush before the 250). Anything else (reject, 552, disconnect, storage
 * error): `abort()` closes and removes the `.tmp`. A crash leaves a `.tmp`, which recovery
 * removes (it was never acknowledged).
 * Trusts: the id (from newMessageId, checked by Spool.pathOf). Failure: a failed write is
 * remembered (later writes are dropped, `end()` rejects with it); `install` removes the file
 * when it fails; `abort` never throws.
 */
import { open, rename, unlink, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { Envelope, MessageSink, ReceiveOutcome } from "../types.ts";
import { prefixOf, type IncomingMessage } from "./message-bytes.ts";
import { TMP_SUFFIX, type Spool } from "./spool.ts";

/**
 * Bytes queued for the file above which the sender must wait (the socket is paused): a client
 * faster than the disk cannot make us buffer its message in memory.
 */
export const INCOMING_HIGH_WATER_BYTES = 1024 * 1024;
/** The socket is resumed once the backlog is below this. */
const INCOMING_LOW_WATER_BYTES = 256 * 1024;
/** Parts per writev call (below the kernel's IOV_MAX of 1024). */
const WRITEV_MAX_PARTS = 512;

type State = "open" | "ended" | "installed" | "aborted";

export class IncomingFile implements IncomingMessage {
  /** Total bytes written (our header included). */
  size = 0;
  private state: State = "open";
  private queue: Uint8Array[] = [];
  private queuedBytes = 0;
  private writing = false;
  private error: Error | null = null;
  private prefixParts: Uint8Array[] = [];
  private prefixBytes = 0;
  /** The prefix joined into one buffer (by joinedPrefix), or null. */
  private joined: Uint8Array | null = null;
  private drainWaiters: (() => void)[] = [];
  private idleWaiters: (() => void)[] = [];

  private constructor(
    readonly id: string,
    readonly receivedAt: number,
    /** The `.tmp` path (what a parse worker reads). */
    readonly path: string,
    private readonly finalPath: string,
    private fh: FileHandle | null,
    private readonly prefixLimit: number,
  ) {}

  /** Creates `<id>.tmp` (exclusive). Throws the file-system error (nothing is left behind). */
  static async create(spool: Spool, id: string, receivedAt: number, prefixLimit: number): Promise<IncomingFile> {
    const finalPath = spool.pathOf(id);
    const path = join(spool.dir, id + TMP_SUFFIX);
    const fh = await open(path, "wx", 0o640);
    return new IncomingFile(id, receivedAt, path, finalPath, fh, prefixLimit);
  }

  /** Queues bytes for the file; false when the sender should wait for `drained()`. */
  write(bytes: Uint8Array): boolean {
    if (this.state !== "open" || bytes.byteLength === 0) return true;
    this.size += bytes.byteLength;
    if (this.prefixBytes < this.prefixLimit) {
      const take = Math.min(bytes.byteLength, this.prefixLimit - this.prefixBytes);
      this.prefixParts.push(take === bytes.byteLength ? bytes : bytes.subarray(0, take));
      this.prefixBytes += take;
    }
    if (this.error) return true; // failed: dropped, end() reports it
    this.queue.push(bytes);
    this.queuedBytes += bytes.byteLength;
    if (!this.writing) void this.writeLoop();
    return this.queuedBytes < INCOMING_HIGH_WATER_BYTES;
  }

  /** Resolves when the backlog is small again (or the file failed or was aborted). */
  drained(): Promise<void> {
    if (this.queuedBytes < INCOMING_LOW_WATER_BYTES || this.error || this.state === "aborted") return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** No more bytes: resolves when all are written; rejects with the first write error. */
  async end(): Promise<void> {
    if (this.state === "open") this.state = "ended";
    await this.idle();
    if (this.error) throw this.error;
    if (this.state === "aborted") throw new Error("spool file was discarded");
  }

  /** Whether the whole message is in memory (it fits in the prefix). */
  get whollyInMemory(): boolean {
    return this.size <= this.prefixLimit;
  }

  /**
   * The first `limit` bytes (at most `prefixLimit`): a view of the prefix, joined into one
   * allocation once (the loop check and the parse both read it: one copy, not two).
   */
  prefix(limit: number = this.prefixLimit): Uint8Array {
    if (this.state === "open") return prefixOf({ parts: this.prefixParts, size: this.prefixBytes }, limit);
    return this.joinedPrefix().subarray(0, Math.min(limit, this.prefixBytes));
  }

  /**
   * The whole message as one buffer owning its memory (it may be transferred to a worker; the
   * parts may be the caller's), when `whollyInMemory`; else null. The caller owns it from now
   * on: the in-memory prefix is let go of.
   */
  bytes(): Uint8Array | null {
    if (!this.whollyInMemory) return null;
    const whole = this.state === "open" ? prefixOf({ parts: this.prefixParts, size: this.prefixBytes }, this.prefixBytes) : this.joinedPrefix();
    this.forgetPrefix();
    return whole;
  }

  /** Drops the in-memory prefix (the file has the bytes). */
  forgetPrefix(): void {
    this.prefixParts = [];
    this.prefixBytes = 0;
    this.joined = null;
  }

  /**
   * The prefix parts as ONE new buffer owning its ArrayBuffer, joined once (the parts are then
   * replaced by it). Never one of the caller's parts: bytes() may hand it to a worker.
   */
  private joinedPrefix(): Uint8Array {
    if (this.joined && this.prefixParts.length === 1 && this.prefixParts[0] === this.joined) return this.joined;
    const joined = prefixOf({ parts: this.prefixParts, size: this.prefixBytes }, this.prefixBytes);
    this.prefixParts = [joined];
    this.joined = joined;
    return joined;
  }

  /**
   * Makes the file the message's spool file: all bytes written, fsync (when `fsync`), close,
   * rename to `<id>.eml`. Durable only after the caller's group flush (or directory fsync).
   * On failure the file is removed and the error thrown.
   */
  async install(opts: { fsync: boolean }): Promise<void> {
    try {
      await this.end();
      const fh = this.fh;
      if (!fh) throw new Error("spool file is closed");
      if (opts.fsync) await fh.sync();
      this.fh = null;
      await fh.close();
      await rename(this.path, this.finalPath);
      this.state = "installed";
      this.forgetPrefix();
    } catch (err) {
      await this.abort();
      throw err;
    }
  }

  /** Discards the message: stops writing, closes and removes the `.tmp`. Never throws. */
  async abort(): Promise<void> {
    if (this.state === "installed" || this.state === "aborted") return;
    this.state = "aborted";
    this.queue = [];
    this.queuedBytes = 0;
    this.forgetPrefix();
    this.wakeDrain();
    await this.idle();
    const fh = this.fh;
    this.fh = null;
    await fh?.close().catch(() => undefined);
    await unlink(this.path).catch(() => undefined);
  }

  private idle(): Promise<void> {
    if (!this.writing) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private async writeLoop(): Promise<void> {
    this.writing = true;
    while (this.queue.length > 0 && this.error === null && this.fh !== null) {
      const batch = this.queue.splice(0, WRITEV_MAX_PARTS);
      const expected = batch.reduce((n, part) => n + part.byteLength, 0);
      try {
        const { bytesWritten } = await this.fh.writev(batch);
        if (bytesWritten !== expected) throw new Error(`short write to the spool (${bytesWritten} of ${expected} bytes)`);
      } catch (err) {
        this.error = err instanceof Error ? err : new Error(String(err));
      }
      this.queuedBytes = Math.max(0, this.queuedBytes - expected);
      if (this.queuedBytes < INCOMING_LOW_WATER_BYTES) this.wakeDrain();
    }
    if (this.error) {
      this.queue = [];
      this.queuedBytes = 0;
      this.wakeDrain();
    }
    this.writing = false;
    for (const wake of this.idleWaiters.splice(0)) wake();
  }

  private wakeDrain(): void {
    for (const wake of this.drainWaiters.splice(0)) wake();
  }
}

/**
 * A MessageSink that receives a message as it arrives (the gateway's pipeline): the SMTP layer
 * opens an IncomingFile at DATA start, writes to it, and hands it over with the envelope.
 */
export interface OwningMessageSink extends MessageSink {
  openIncoming(): Promise<IncomingFile>;
  /** Takes ownership of `file` (installs or removes it). */
  receiveOwned(file: IncomingFile, envelope: Envelope): Promise<ReceiveOutcome>;
}

export function isOwningSink(sink: MessageSink): sink is OwningMessageSink {
  const candidate = sink as Partial<OwningMessageSink>;
  return typeof candidate.receiveOwned === "function" && typeof candidate.openIncoming === "function";
}
