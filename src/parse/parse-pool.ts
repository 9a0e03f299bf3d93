/**
 * A small pool of parse workers (parse-worker.ts): extractFacts runs off the event loop, so a
 * 25 MB message being parsed does not stall every other session, and the parse tree (decoded
 * text, part buffers) lives and dies in the worker's heap. Only the facts come back.
 *
 * The message bytes are transferred (not copied) to the worker and, when the caller still
 * needs them, transferred back with the facts; or (`parseFile`) the worker reads the message
 * from its spool file, so a big message never passes through the main thread. Bytes that do not own their
 * whole ArrayBuffer (a slice of a pooled Buffer) are copied instead.
 * Trusts: the bytes' sizes (smtp/ limits them). Failure: `start` resolves null when no
 * worker starts (the caller parses in-thread). A worker that crashes or misses
 * PARSE_TIMEOUT_MS fails only the job it held (ParseWorkerError; transferred bytes are gone
 * with it, so the caller answers 451) and is replaced; jobs queued behind it still run.
 */
import { availableParallelism } from "node:os";
import type { Envelope, MessageFacts } from "../types.ts";
import { workerSpecifier } from "../spool/worker-url.ts";

/** The worker file, below src/ (also listed in scripts/build.ts WORKER_ENTRYPOINTS). */
export const PARSE_WORKER_PATH = "parse/parse-worker.ts";
/**
 * Longest a worker may take for one message. The limits in limits.ts keep any message under
 * about 1 s of CPU; this stops a parser bug (an endless loop) from holding a session forever.
 */
export const PARSE_TIMEOUT_MS = 10_000;
/** How long a new worker may take to load before the pool is given up (in-thread parsing). */
const START_TIMEOUT_MS = 10_000;
/** Workers: one per spare core, at most 2 (parsing is bursty; more would compete with the loop). */
export const DEFAULT_POOL_SIZE = Math.min(2, Math.max(1, availableParallelism() - 1));

export type ParseRequest =
  | { kind: "parse"; job: number; bytes: ArrayBuffer; envelope: Envelope; content: boolean; giveBack: boolean }
  /** The message is in a file (its spool file): the worker reads it, nothing is transferred. */
  | { kind: "parse-file"; job: number; path: string; envelope: Envelope; content: boolean };

export type ParseReply = { kind: "parsed"; job: number; facts: MessageFacts; bytes: ArrayBuffer | null } | { kind: "ready" };

export interface ParseOutcome {
  facts: MessageFacts;
  /** The message bytes, usable again (the caller's own, or the ones the worker gave back). */
  bytes: Uint8Array;
}

/** A worker died or timed out on this job. `bytesLost`: the message bytes went with it. */
export class ParseWorkerError extends Error {
  constructor(message: string, readonly bytesLost: boolean) {
    super(message);
    this.name = "ParseWorkerError";
  }
}

interface Job {
  id: number;
  request: ParseRequest;
  /** The caller's bytes when a copy was sent (nothing to give back). */
  kept: Uint8Array | null;
  resolve: (outcome: ParseOutcome) => void;
  reject: (err: Error) => void;
}

interface Slot {
  worker: Worker;
  job: Job | null;
  timer: ReturnType<typeof setTimeout> | null;
}

export interface ParsePoolOptions {
  size?: number;
  timeoutMs?: number;
  /** Worker module (tests use a worker that crashes or hangs on purpose). */
  specifier?: string;
}

export class ParsePool {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextJob = 0;
  private closed = false;
  /** Workers replaced after a crash or timeout (for logs and tests). */
  restarts = 0;

  private constructor(private readonly specifier: string, private readonly timeoutMs: number) {}

  /** Starts the workers; null (with the reason) when the first one does not load. */
  static async start(opts: ParsePoolOptions = {}): Promise<{ pool: ParsePool } | { pool: null; reason: string }> {
    const pool = new ParsePool(opts.specifier ?? workerSpecifier(PARSE_WORKER_PATH), opts.timeoutMs ?? PARSE_TIMEOUT_MS);
    const size = Math.max(1, opts.size ?? DEFAULT_POOL_SIZE);
    for (let i = 0; i < size; i++) {
      const started = await loadWorker(pool.specifier);
      if ("reason" in started) {
        await pool.close();
        return { pool: null, reason: started.reason };
      }
      pool.slots.push(pool.attach(started.worker));
    }
    return { pool };
  }

  get size(): number {
    return this.slots.length;
  }

  /**
   * Facts of one message, parsed in a worker. Do not use `bytes` after calling this: use the
   * outcome's `bytes` (they may have been transferred away and back).
   */
  parse(bytes: Uint8Array, envelope: Envelope, opts: { content: boolean }): Promise<ParseOutcome> {
    if (this.closed) return Promise.reject(new Error("parse pool is closed"));
    const owned = ownsWholeBuffer(bytes);
    // new Uint8Array(view) copies (Buffer#slice would not: it is a view in Node).
    const buffer = owned ? (bytes.buffer as ArrayBuffer) : new Uint8Array(bytes).buffer;
    return new Promise<ParseOutcome>((resolve, reject) => {
      const id = ++this.nextJob;
      const request: ParseRequest = { kind: "parse", job: id, bytes: buffer, envelope, content: opts.content, giveBack: owned };
      this.queue.push({ id, request, kept: owned ? null : bytes, resolve, reject });
      this.dispatch();
    });
  }

  /**
   * Facts of the message in the file at `path` (read by the worker; the file must not change
   * meanwhile). The outcome's `bytes` are empty: nothing comes back but the facts.
   */
  parseFile(path: string, envelope: Envelope, opts: { content: boolean }): Promise<ParseOutcome> {
    if (this.closed) return Promise.reject(new Error("parse pool is closed"));
    return new Promise<ParseOutcome>((resolve, reject) => {
      const id = ++this.nextJob;
      const request: ParseRequest = { kind: "parse-file", job: id, path, envelope, content: opts.content };
      this.queue.push({ id, request, kept: EMPTY, resolve, reject });
      this.dispatch();
    });
  }

  /** Fails queued and running jobs and stops the workers. */
  async close(): Promise<void> {
    this.closed = true;
    const err = new Error("parse pool is closed");
    for (const job of this.queue.splice(0)) job.reject(err);
    for (const slot of this.slots) {
      if (slot.timer) clearTimeout(slot.timer);
      slot.job?.reject(err);
      slot.job = null;
      slot.worker.terminate();
    }
  }

  private attach(worker: Worker): Slot {
    const slot: Slot = { worker, job: null, timer: null };
    worker.onmessage = (event: MessageEvent<ParseReply>) => this.onReply(slot, event.data);
    worker.onerror = (event) => this.replace(slot, `parse worker failed: ${event.message}`);
    worker.addEventListener("close", () => this.replace(slot, "parse worker exited"));
    worker.unref();
    return slot;
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (slot.job !== null) continue;
      const job = this.queue.shift();
      if (!job) return;
      slot.job = job;
      slot.timer = setTimeout(() => this.replace(slot, `parse worker took longer than ${this.timeoutMs} ms`), this.timeoutMs);
      const request = job.request;
      slot.worker.postMessage(request, request.kind === "parse" ? [request.bytes] : []);
    }
  }

  private onReply(slot: Slot, reply: ParseReply): void {
    const job = slot.job;
    if (reply.kind !== "parsed" || job === null || reply.job !== job.id) return;
    if (slot.timer) clearTimeout(slot.timer);
    slot.job = null;
    slot.timer = null;
    const bytes = job.kept ?? (reply.bytes ? new Uint8Array(reply.bytes) : null);
    if (bytes) job.resolve({ facts: reply.facts, bytes });
    else job.reject(new ParseWorkerError("parse worker did not give the message back", true));
    this.dispatch();
  }

  /** Fails the slot's job, puts a fresh worker in its place, goes on with the queue. */
  private replace(slot: Slot, reason: string): void {
    if (this.closed || !this.slots.includes(slot)) return;
    const job = slot.job;
    if (slot.timer) clearTimeout(slot.timer);
    slot.job = null;
    slot.timer = null;
    slot.worker.onmessage = null;
    slot.worker.onerror = null;
    slot.worker.terminate();
    job?.reject(new ParseWorkerError(reason, job.kept === null));
    this.slots.splice(this.slots.indexOf(slot), 1);
    this.restarts++;
    try {
      this.slots.push(this.attach(new Worker(this.specifier)));
    } catch {
      // No worker could be started: the pool shrinks; with none left, parse() waits forever —
      // so fail what is queued and let the caller parse in-thread.
      if (this.slots.length === 0) this.closeForGood();
    }
    this.dispatch();
  }

  private closeForGood(): void {
    void this.close();
  }

  /** False once no worker is left (the caller then parses in-thread). */
  get usable(): boolean {
    return !this.closed && this.slots.length > 0;
  }
}

/** What a file job "keeps" (nothing was transferred, so nothing is lost or given back). */
const EMPTY = new Uint8Array(0);

function ownsWholeBuffer(bytes: Uint8Array): boolean {
  return bytes.buffer instanceof ArrayBuffer && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
}

function loadWorker(specifier: string): Promise<{ worker: Worker } | { reason: string }> {
  return new Promise((resolve) => {
    let worker: Worker;
    try {
      worker = new Worker(specifier);
    } catch (err) {
      resolve({ reason: `worker did not start: ${err instanceof Error ? err.message : String(err)}` });
      return;
    }
    const timer = setTimeout(() => {
      worker.terminate();
      resolve({ reason: `worker did not load in ${START_TIMEOUT_MS} ms` });
    }, START_TIMEOUT_MS);
    worker.onerror = (event) => {
      clearTimeout(timer);
      worker.terminate();
      resolve({ reason: `worker failed: ${event.message}` });
    };
    worker.onmessage = (event: MessageEvent<ParseReply>) => {
      if (event.data.kind !== "ready") return;
      clearTimeout(timer);
      resolve({ worker });
    };
  });
}
