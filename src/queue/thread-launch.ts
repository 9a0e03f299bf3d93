/**
 * Starting one delivery thread (delivery-thread.ts) for threaded-worker.ts: load it, answer its
 * `ready` with the Config, and wait for its worker to run. Apart from the thread's supervision
 * because a first start and a restart after a crash go through the same handshake.
 *
 * Trusts: the thread is this build (thread-protocol.ts). Failure: a thread that cannot be
 * created, reports start-failed, errors or does not start within START_TIMEOUT_MS is
 * terminated, and the reason returned.
 */
import type { Config } from "../config/config.ts";
import type { ThreadReply, ThreadRequest } from "./thread-protocol.ts";

/** How long a new thread may take to load, open the database and start. */
const START_TIMEOUT_MS = 15_000;

export type ThreadLaunch = { thread: Worker } | { reason: string };

/**
 * Starts a thread and waits until its worker runs (or it failed). `config` is read when the thread
 * asks for it; replies other than the handshake's (its start's log lines) go to `onReply`.
 * `onInit` gets the thread once its init is posted: what is posted to it from then on is handled
 * after its start, so a change of the Config meanwhile can still reach it.
 */
export function launchDeliveryThread(
  specifier: string,
  config: () => Config,
  onReply: (reply: ThreadReply) => void,
  onInit: (thread: Worker) => void,
): Promise<ThreadLaunch> {
  return new Promise((resolve) => {
    let t: Worker;
    try {
      t = new Worker(specifier);
    } catch (err) {
      resolve({ reason: err instanceof Error ? err.message : String(err) });
      return;
    }
    const fail = (reason: string) => {
      clearTimeout(timer);
      t.terminate();
      resolve({ reason });
    };
    const timer = setTimeout(() => fail("the delivery thread did not start in time"), START_TIMEOUT_MS);
    t.onerror = (event) => fail(`delivery thread failed: ${event.message}`);
    t.onmessage = (event: MessageEvent<ThreadReply>) => {
      const reply = event.data;
      if (reply.kind === "ready") {
        t.postMessage({ kind: "init", config: config() } satisfies ThreadRequest);
        onInit(t);
      } else if (reply.kind === "start-failed") fail(reply.error);
      else if (reply.kind === "started") {
        clearTimeout(timer);
        resolve({ thread: t });
      } else onReply(reply);
    };
  });
}
