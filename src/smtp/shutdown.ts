/**
 * Graceful stop of the SMTP listener (SIGTERM/SIGINT): stop accepting, drop sockets still
 * sending a PROXY header, close idle sessions at once with 421, let sessions in the middle of
 * a transaction finish it for up to `graceMs` (a new MAIL is answered 421 and closed
 * meanwhile, GatewaySmtpServer.draining), then close what is left with 421. A message being stored is always waited for
 * (bounded by STORE_WAIT_MS), so the process never exits between fsync and the reply.
 */
import type { Front } from "./front.ts";
import { GatewayConnection, type GatewaySmtpServer } from "./connection.ts";

/** Upper bound on waiting for a message whose storage already started. */
const STORE_WAIT_MS = 30_000;
/** After the last 421s: how long a client gets to close its side before its socket is destroyed. */
const CLOSE_WAIT_MS = 1_000;
const POLL_MS = 50;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function createShutdown(opts: { smtp: GatewaySmtpServer; front: Front; isStoring: () => boolean; unlogged: () => number }) {
  const { smtp, front } = opts;
  /** Sessions sent their 421: the library forgets them at once, before their sockets close. */
  const told = new Set<GatewayConnection>();
  const closeWhere = (pick: (c: GatewayConnection) => boolean): void => {
    for (const c of smtp.connections) {
      if (!(c instanceof GatewayConnection) || !pick(c)) continue;
      c.shutDown();
      told.add(c);
    }
  };
  const open = (): GatewayConnection[] => [...told].filter((c) => !c.hasEnded());
  return async (graceMs: number): Promise<void> => {
    front.server.close();
    front.dropPending();
    // Not smtp.close(): see GatewaySmtpServer.draining (its listener never listened anyway:
    // connections come through front).
    smtp.draining = true;
    const graceEnd = performance.now() + graceMs;
    while (smtp.connections.size > 0 && performance.now() < graceEnd) {
      closeWhere((c) => c.isIdle());
      await sleep(POLL_MS);
    }
    // Past the grace period: every session goes, except one whose message is being stored.
    const storeEnd = performance.now() + STORE_WAIT_MS;
    for (;;) {
      closeWhere((c) => !c.isStoring());
      if (!opts.isStoring() || performance.now() >= storeEnd) break;
      await sleep(POLL_MS);
    }
    closeWhere(() => true);
    // A client that does not close its side after the 421 (a stalled sender) keeps its socket
    // until the library's close timer, after the process has exited: its session had no line.
    // A session that ended by QUIT just before the stop left `connections` at once, but its
    // socket closes, and its line and session count come, a moment later: waited for too, or
    // the stop outran them (a session missing from the log and the counters).
    const closeEnd = performance.now() + CLOSE_WAIT_MS;
    while ((open().length > 0 || opts.unlogged() > 0) && performance.now() < closeEnd) await sleep(POLL_MS);
    const stalled = open();
    for (const c of stalled) c.destroySocket();
    // Their 'close' comes on a later turn, and a session cut mid-DATA logs once its message is
    // given up: a moment for both, not a bare turn that the rest of the stop may outrun.
    if (stalled.length > 0) await sleep(POLL_MS);
  };
}
