/**
 * A message being received, on its way to its spool file (like Postfix's queue file).
 * A small message (up to INCOMING_MEMORY_MAX_BYTES: nearly all mail) is kept in memory: at
 * commit the intake's spool writer thread writes it to `spool/<id>.tmp`, renames it to
 * `<id>.eml` and makes it durable with the group's syncfs, with no thread-pool round trip on
 * the event loop per message (spool/spool-flusher.ts). A bigger one is SPILLED: once it
 * passes the limit, `spool/<id>.tmp` is created and our `Received:` header and every DATA
 * chunk so far and to come are appended with async writes, so the main thread never holds a
 * whole big message — only the chunks not yet written (at most about
 * INCOMING_HIGH_WATER_BYTES: above it `write` returns false and the caller pauses the socket
 * until `drained()`) and its header section: the bytes through the first blank line, found as
 * they arrive, up to SPILLED_HEADER_MEMORY_MAX_BYTES. A longer header section is read back from
 * the file when the message ends (at most `prefixLimit`). Keeping the body chunks until the
 * message ends made every one outlive the young-generation collections.
 * Every byte also goes through a running CRC-32 (`crc`), recorded with the message's row:
 * recovery checks it for rows committed just before a crash (see act/intake.ts).
 * Accepted: `spoolJob()` for the writer thread, or `install()` (write or close, fsync when asked,
 * rename to `<id>.eml`) where there is no group flush. Anything else (reject, 552, disconnect,
 * storage error): `abort()` removes the `.tmp` if there is one. A crash leaves at most a `.tmp`,
 * which recovery removes (it was never acknowledged).
 * Trusts: the id (from newMessageId, checked by Spool.pathOf). Failure: a failed write is
 * remembered (later writes are dropped, `end()` rejects with it); `install` removes the file
 * when it fails; `abort` never throws.
 */
import { open, rename, unlink, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { Envelope, MessageSink, ReceiveOutcome } from "../types.ts";
import { HeaderEndFinder, headerEndOf, prefixOf, type IncomingMessage } from "./message-bytes.ts";
import { TMP_SUFFIX, WRITEV_MAX_PARTS, writevAll, type Spool } from "./spool.ts";

/**
 * Bytes queued for the file above which the sender must wait (the socket is paused): a client
 * faster than the disk cannot make us buffer its message in memory.
 */
export const INCOMING_HIGH_WATER_BYTES = 1024 * 1024;
/** The socket is resumed once the backlog is below this. */
const INCOMING_LOW_WATER_BYTES = 256 * 1024;

/**
 * Messages up to this size stay in memory until the spool writer thread writes them at commit
 * (one write, no per-chunk async I/O): most mail. Anything bigger streams to its file as it
 * arrives, overlapping the writes with the transfer (measured: 100 KB messages cost ~30% more
 * CPU when held and handed to the writer thread than when streamed). 100 sessions in DATA
 * hold at most 6.4 MB this way.
 */
export const INCOMING_MEMORY_MAX_BYTES = 64 * 1024;

/**
 * A spilled message's header section kept in memory while it arrives, at most; past it the
 * section is read back from the file at the end. Real header sections are a few KB (a long
 * ARC/DKIM chain ~20 KB). Holding up to `prefixLimit` (1.15 MB) for the whole of DATA let a
 * sender hold ~1.2 MB per session for as long as it kept the session open: 450 such sessions
 * took serve to ~650 MB. Now a session in DATA holds at most this plus the write backlog.
 */
export const SPILLED_HEADER_MEMORY_MAX_BYTES = 64 * 1024;

type State = "open" | "ended" | "installed" | "aborted";

/** What the spool writer thread does for one accepted message (spool-flusher.ts). */
export interface SpoolJob {
  /** Where the bytes go first (or already are, for a spilled message). */
  tmp: string;
  /** `<id>.eml`: renamed to once the bytes are all there. */
  final: string;
  /** The whole message for a message kept in memory; null: `tmp` is already written. */
  bytes: Uint8Array | null;
}

export class IncomingFile implements IncomingMessage {
  /** Total bytes received (our header included). */
  size = 0;
  /** CRC-32 of every byte so far (of the spool file's exact contents once complete). */
  crc = 0;
  private state: State = "open";
  /** The bytes go to `path` as they arrive (the message outgrew the memory limit). */
  private spilled = false;
  private fh: FileHandle | null = null;
  private queue: Uint8Array[] = [];
  private queuedBytes = 0;
  private writing = false;
  private error: Error | null = null;
  private prefixParts: Uint8Array[] = [];
  private prefixBytes = 0;
  /** The header section outgrew SPILLED_HEADER_MEMORY_MAX_BYTES: end() reads it back from the file. */
  private prefixOnDisk = false;
  private prefixReadBack: Promise<void> | null = null;
  /** The prefix joined into one buffer (by joinedPrefix), or null. */
  private joined: Uint8Array | null = null;
  /** The whole message of a message never spilled, once ended (kept until it is written). */
  private memory: Uint8Array | null = null;
  /** Fed every byte of the first `prefixLimit` until it finds the end of the header section. */
  private headerEnd = new HeaderEndFinder();
  private drainWaiters: (() => void)[] = [];
  private idleWaiters: (() => void)[] = [];

  private constructor(
    readonly id: string,
    readonly receivedAt: number,
    /** The `.tmp` path (what a parse worker reads once spilled). */
    readonly path: string,
    private readonly finalPath: string,
    private readonly prefixLimit: number,
    private readonly memoryLimit: number,
  ) {}

  /**
   * A message to receive; nothing is created on disk until it outgrows `memoryLimit` (at most
   * `prefixLimit`, so every byte before the spill is still in the prefix).
   */
  static async create(spool: Spool, id: string, receivedAt: number, prefixLimit: number, memoryLimit = INCOMING_MEMORY_MAX_BYTES): Promise<IncomingFile> {
    return new IncomingFile(id, receivedAt, join(spool.dir, id + TMP_SUFFIX), spool.pathOf(id), prefixLimit, Math.min(memoryLimit, prefixLimit));
  }

  /** Queues bytes for the file; false when the sender should wait for `drained()`. */
  write(bytes: Uint8Array): boolean {
    if (this.state !== "open" || bytes.byteLength === 0) return true;
    if (this.headerEnd.fed === this.size && this.size < this.prefixLimit) this.headerEnd.feed(bytes);
    this.size += bytes.byteLength;
    this.crc = Bun.hash.crc32(bytes, this.crc);
    // Before this chunk joins the prefix, the prefix holds every byte so far: that is what spills.
    if (!this.spilled && this.size > this.memoryLimit) this.spill();
    const keep = this.prefixKeep();
    if (this.prefixBytes < keep) {
      const take = Math.min(bytes.byteLength, keep - this.prefixBytes);
      this.prefixParts.push(take === bytes.byteLength ? bytes : bytes.subarray(0, take));
      this.prefixBytes += take;
    }
    if (this.spilled && this.prefixBytes > SPILLED_HEADER_MEMORY_MAX_BYTES) this.movePrefixToDisk();
    if (!this.spilled || this.error) return true; // failed: dropped, end() reports it
    this.enqueue(bytes);
    return this.queuedBytes < INCOMING_HIGH_WATER_BYTES;
  }

  /** Resolves when the backlog is small again (or the file failed or was aborted). */
  drained(): Promise<void> {
    if (this.queuedBytes < INCOMING_LOW_WATER_BYTES || this.error || this.state === "aborted") return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** No more bytes: resolves when all are written; rejects with the first write error. */
  async end(): Promise<void> {
    if (this.state === "open") {
      this.state = "ended";
      if (!this.spilled) this.memory = this.joinedPrefix();
    }
    await this.idle();
    if (this.error) throw this.error;
    if (this.state === "aborted") throw new Error("spool file was discarded");
    if (this.prefixOnDisk) await (this.prefixReadBack ??= this.readPrefixBack());
  }

  /** Whether the whole message is in memory (the prefix holds all of it). */
  get whollyInMemory(): boolean {
    return this.memory !== null || this.prefixBytes === this.size;
  }

  /** Bytes of the message's start held in memory now, outside the write backlog (SPILLED_HEADER_MEMORY_MAX_BYTES). */
  get prefixHeldBytes(): number {
    return this.prefixBytes;
  }

  /** Whether nothing is on disk yet: the bytes are written at commit (spoolJob / install). */
  get keptInMemory(): boolean {
    return !this.spilled;
  }

  /**
   * The header section (see headerEndOf), at most `limit` and `prefixLimit` bytes: a view when
   * the message is already one buffer in memory, else a copy of just those bytes. A spilled
   * message's body is never joined for a header-only read (the loop check, header-only rules).
   */
  headerSection(limit: number): Uint8Array {
    const whole = this.memory ?? this.joined;
    const bytes = whole ? { parts: [whole], size: whole.byteLength } : { parts: this.prefixParts, size: this.prefixBytes };
    const end = headerEndOf(bytes, Math.min(limit, this.prefixLimit));
    return whole ? whole.subarray(0, end) : prefixOf(bytes, end);
  }

  /**
   * The whole message as one buffer, when `whollyInMemory`; else null. For a spilled message
   * the caller owns it (the prefix is let go of: the file has the bytes) and may transfer it;
   * for a message kept in memory it is the one to be written: copy it before transferring.
   */
  bytes(): Uint8Array | null {
    if (this.memory) return this.memory;
    if (!this.whollyInMemory) return null;
    const whole = this.state === "open" ? prefixOf({ parts: this.prefixParts, size: this.prefixBytes }, this.prefixBytes) : this.joinedPrefix();
    this.forgetPrefix();
    return whole;
  }

  /** Drops the in-memory prefix (the file or `memory` has the bytes). */
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
   * For the spool writer thread (after end()): the bytes to write, or — spilled — the closed
   * `.tmp` to rename. The file is the writer's until `installed()` or `abort()`.
   */
  async spoolJob(): Promise<SpoolJob> {
    await this.end();
    if (this.memory) return { tmp: this.path, final: this.finalPath, bytes: this.memory };
    const fh = this.fh;
    this.fh = null;
    if (!fh) throw new Error("spool file is closed");
    await fh.close();
    return { tmp: this.path, final: this.finalPath, bytes: null };
  }

  /** The writer thread wrote and renamed the file: it is the message's spool file now. */
  installed(): void {
    this.state = "installed";
    this.memory = null;
    this.forgetPrefix();
  }

  /**
   * Makes the file the message's spool file without the writer thread: all bytes written (now,
   * for a message kept in memory), fsync (when `fsync`), close, rename to `<id>.eml`. Durable
   * only after the caller's directory fsync. On failure the file is removed and the error thrown.
   */
  async install(opts: { fsync: boolean }): Promise<void> {
    try {
      await this.end();
      const fh = this.memory ? await open(this.path, "wx", 0o640) : this.fh;
      if (!fh) throw new Error("spool file is closed");
      this.fh = fh;
      if (this.memory) await fh.writeFile(this.memory);
      if (opts.fsync) await fh.sync();
      this.fh = null;
      await fh.close();
      await rename(this.path, this.finalPath);
      this.installed();
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
    this.memory = null;
    this.forgetPrefix();
    this.wakeDrain();
    await this.idle();
    const fh = this.fh;
    this.fh = null;
    await fh?.close().catch(() => undefined);
    await unlink(this.path).catch(() => undefined);
  }

  /**
   * How much of the message the prefix keeps: a spilled message's body is in its file, so past
   * its header section (once found) none of it is held in memory until the message ends.
   */
  private prefixKeep(): number {
    if (this.prefixOnDisk) return 0;
    return this.spilled && this.headerEnd.end >= 0 ? Math.min(this.headerEnd.end, this.prefixLimit) : this.prefixLimit;
  }

  /** The message outgrew memory: create the `.tmp`, queue every byte so far for it, keep its header section. */
  private spill(): void {
    this.spilled = true;
    for (const part of this.prefixParts) this.enqueue(part);
    const keep = this.prefixKeep();
    if (keep < this.prefixBytes) {
      const parts = { parts: this.prefixParts, size: this.prefixBytes };
      this.forgetPrefix();
      this.prefixParts = [prefixOf(parts, keep)];
      this.prefixBytes = keep;
    }
  }

  /** The header section is too long to hold while the message arrives: the file has it (spill()). */
  private movePrefixToDisk(): void {
    this.prefixOnDisk = true;
    this.forgetPrefix();
  }

  /** After the last write: the header section (at most `prefixLimit`) from the file, as the prefix. */
  private async readPrefixBack(): Promise<void> {
    const length = Math.min(this.headerEnd.end >= 0 ? this.headerEnd.end : this.size, this.prefixLimit);
    const prefix = Buffer.allocUnsafeSlow(length);
    const fh = await open(this.path, "r");
    try {
      let at = 0;
      while (at < length) {
        const { bytesRead } = await fh.read(prefix, at, length - at, at);
        if (bytesRead === 0) throw new Error(`reading ${this.path} back: ${at} of ${length} bytes`);
        at += bytesRead;
      }
    } finally {
      await fh.close();
    }
    if (this.state === "aborted") throw new Error("spool file was discarded");
    this.prefixParts = [prefix];
    this.prefixBytes = length;
    this.prefixOnDisk = false;
  }

  private enqueue(bytes: Uint8Array): void {
    this.queue.push(bytes);
    this.queuedBytes += bytes.byteLength;
    if (!this.writing) void this.writeLoop();
  }

  private idle(): Promise<void> {
    if (!this.writing) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private async writeLoop(): Promise<void> {
    this.writing = true;
    if (this.fh === null && this.error === null) {
      try {
        this.fh = await open(this.path, "wx", 0o640);
      } catch (err) {
        this.error = err instanceof Error ? err : new Error(String(err));
      }
    }
    while (this.queue.length > 0 && this.error === null && this.fh !== null) {
      const batch = this.queue.splice(0, WRITEV_MAX_PARTS);
      const expected = batch.reduce((n, part) => n + part.byteLength, 0);
      try {
        await writevAll(this.fh, batch);
      } catch (err) {
        // "ENOSPC: no space left on device, write" names no file: say which one (code kept).
        const code = (err as NodeJS.ErrnoException | null)?.code;
        this.error = Object.assign(new Error(`writing ${this.path} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err }), code ? { code } : {});
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
