/**
 * The message sink serve hands to smtp/: the pipeline's, plus two wake-ups per message. Every
 * message wakes the heap governor from its idle back-off (a no-op while it is awake), and an
 * accepted forward or webhook wakes the delivery worker at once instead of at its next poll.
 */
import type { Pipeline } from "../pipeline.ts";
import type { OwningMessageSink } from "../spool/message-bytes.ts";
import type { ReceiveOutcome } from "../types.ts";
import type { ServeState } from "./serve-state.ts";

export function intakeSink(pipeline: Pipeline, worker: { wake(): void }, state: ServeState): OwningMessageSink {
  const wakeDelivery = (outcome: ReceiveOutcome): ReceiveOutcome => {
    if (outcome.decision.action === "forward" || outcome.decision.action === "webhook") worker.wake();
    return outcome;
  };
  return {
    receive(raw, envelope) {
      state.heap?.wake();
      return pipeline.receive(raw, envelope).then(wakeDelivery);
    },
    receiveOwned(message, envelope) {
      state.heap?.wake();
      return pipeline.receiveOwned(message, envelope).then(wakeDelivery);
    },
    openIncoming() {
      state.heap?.wake();
      return pipeline.openIncoming();
    },
  };
}
