/**
 * Whether the pipeline still takes messages, and how many receives are in flight. close() stops
 * new ones (451) and then waits for those already admitted, so no receive is cut off halfway
 * and none starts after the intake was drained. Separate so that the receive entry points and
 * close() share one gate.
 */
import { SmtpError } from "../errors.ts";
import type { ReceiveOutcome } from "../types.ts";

/** What a message gets once the pipeline is shutting down: 451, the sender retries. */
export function shuttingDown(): SmtpError {
  return SmtpError.temporary(new Error("pipeline is shutting down"));
}

export class Admission {
  /** Set by close() only: from then on every receive and openIncoming gets 451. */
  closed = false;
  private active = 0;
  private readonly inactiveWaiters: (() => void)[] = [];

  /** Runs one receive, counted as in flight until it settles; 451 once closed. */
  async run(receive: () => Promise<ReceiveOutcome>): Promise<ReceiveOutcome> {
    if (this.closed) throw shuttingDown();
    this.active++;
    try {
      return await receive();
    } finally {
      this.active--;
      if (this.active === 0) for (const wake of this.inactiveWaiters.splice(0)) wake();
    }
  }

  close(): void {
    this.closed = true;
  }

  /** Resolves when no receive is in flight. */
  async idle(): Promise<void> {
    if (this.active > 0) await new Promise<void>((resolve) => this.inactiveWaiters.push(resolve));
  }
}
