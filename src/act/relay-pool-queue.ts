/**
 * The messages handed to the relay pool (relay-pool.ts): waiting for a session in order, or on
 * one until their result. Owns each message's settling (exactly once: by its result, its abort
 * signal or its deadline) and whether the pool still takes messages. Separate from the sessions:
 * the pool asks it for the next message, and hears from it only that one was aborted.
 *
 * Trusts: the pool to take messages only through next(). Failure: never rejects; a message it
 * cannot send settles with an error (see RelayPoolResult).
 */
import { deadlineError, poolClosedError } from "./relay-pool-errors.ts";
import type { Session } from "./relay-pool-session.ts";
import type { RelayPoolJob, RelayPoolResult } from "./relay-pool-types.ts";

export interface Waiting {
  job: RelayPoolJob;
  resolve: (r: RelayPoolResult) => void;
  requeues: number;
  settled: boolean;
  session: Session | null;
  onAbort: () => void;
  deadline: ReturnType<typeof setTimeout> | null;
  /** The job's message converted for a relay without 8BITMIME, once one needed it (long lines broken too). */
  sevenBit?: Buffer;
  /** The job's message with its long lines broken (long-lines.ts; itself when it has none), once a relay with 8BITMIME took it. */
  asSent?: Buffer;
  /** The data and its final dot are in the socket's hands: only the relay's reply is missing. */
  dataSent?: boolean;
}

export function settle(w: Waiting, result: RelayPoolResult): void {
  if (w.settled) return;
  w.settled = true;
  w.session = null;
  if (w.deadline) clearTimeout(w.deadline);
  w.job.signal.removeEventListener("abort", w.onAbort);
  w.resolve(result);
}

/** What the queue needs from the pool. */
export interface MessageQueueHooks {
  /** Hand waiting messages to sessions. */
  dispatch(): void;
  /** An aborted message's session: its state is unknown, nothing more may be sent on it. */
  abandon(s: Session): void;
}

export interface MessageQueue {
  /** RelayPool.send. */
  send(job: RelayPoolJob): Promise<RelayPoolResult>;
  /** Messages waiting for a session. */
  count(): number;
  /** The first waiting message, taken out of the queue; only when count() > 0. */
  next(): Waiting;
  /** A message no byte of which was sent goes first again (or fails, the pool being closed). */
  requeue(w: Waiting): void;
  /** The relay is down: every waiting message fails with its error. */
  failAll(error: unknown): void;
  /** Takes no more messages; the waiting ones fail as not sent (isPoolClosedError). */
  close(): void;
  isClosed(): boolean;
}

export function createMessageQueue(hooks: MessageQueueHooks): MessageQueue {
  const waiting: Waiting[] = [];
  let closed = false;

  function abort(w: Waiting, reason: unknown): void {
    const i = waiting.indexOf(w);
    if (i !== -1) waiting.splice(i, 1);
    const s = w.session;
    if (s !== null) hooks.abandon(s);
    const text = reason instanceof Error ? reason.message : "aborted";
    // Still in line: every connection was busy (or opening one took that long). Said so, or
    // "timed out" read as if the relay had been tried.
    const where = i !== -1 && s === null ? " while waiting for a connection to the relay (all busy with other messages, or still opening); nothing was sent" : "";
    const error = new Error(where ? `${text.replace(/\.$/, "")}${where}` : text, { cause: reason });
    error.name = "AbortError";
    // No verdict on the relay, even on a session: cut off before a reply, as by a relay too slow
    // (a tarpit) or a transfer too slow for the deadline; "the relay works" would end a suspension.
    settle(w, { ok: false, error });
    hooks.dispatch();
  }

  return {
    send(job) {
      return new Promise<RelayPoolResult>((resolve) => {
        const w: Waiting = { job, resolve, requeues: 0, settled: false, session: null, onAbort: () => abort(w, job.signal.reason), deadline: null };
        if (closed) return settle(w, { ok: false, error: poolClosedError() });
        if (job.signal.aborted) return abort(w, job.signal.reason);
        if (job.deadlineMs !== undefined) w.deadline = setTimeout(() => abort(w, deadlineError()), job.deadlineMs);
        job.signal.addEventListener("abort", w.onAbort, { once: true });
        waiting.push(w);
        hooks.dispatch();
      });
    },
    count: () => waiting.length,
    next: () => waiting.shift() as Waiting,
    requeue(w) {
      // Closed meanwhile (a reload): not sent, so the caller may take it to the new pool.
      if (closed) return settle(w, { ok: false, error: poolClosedError() });
      waiting.unshift(w);
      hooks.dispatch();
    },
    failAll(error) {
      for (const w of waiting.splice(0)) settle(w, { ok: false, error, relayDown: true });
    },
    close() {
      closed = true;
      for (const w of waiting.splice(0)) settle(w, { ok: false, error: poolClosedError() });
    },
    isClosed: () => closed,
  };
}
