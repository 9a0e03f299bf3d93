/**
 * The relay pool the delivery worker (worker.ts) hands forwards to, and the forwards held while
 * there is none. Apart from the worker because claims (the relay's cap), attempts (the client),
 * housekeeping (held forwards) read it, while only serve's start, SIGHUP and stop swap it.
 *
 * Trusts: the validated RelayConfig. Failure: releaseHeld's database errors reach the caller
 * (a tick logs them and tries again on the next one).
 */
import type { Database } from "bun:sqlite";
import { createRelayClient, type RelayClient } from "../act/relay.ts";
import type { Config, RelayConfig } from "../config/config.ts";
import type { Logger } from "../log/logger.ts";
import * as store from "./queue-store.ts";

/**
 * Forwards in flight per pooled relay connection: keeps each connection busy and lets claims and
 * result commits cover several messages (2 -> 4: -11% delivery CPU per message), while the
 * queue behind one connection stays short.
 */
export const FORWARDS_PER_RELAY_CONNECTION = 4;

export interface CurrentRelay {
  /** null while no relay is configured (forwards are held). */
  client(): RelayClient | null;
  /** Forwards it may have in flight (0 without a relay). */
  cap(): number;
  /** A pool for these settings (none for null) replaces the current one, which is returned, not closed. */
  swap(next: RelayConfig | null): RelayClient | null;
  /** With a relay, the held forwards become due. */
  releaseHeld(): void;
}

export function createCurrentRelay(opts: { config: Config; db: Database; logger: Logger; now: () => number }): CurrentRelay {
  const { config, db, logger, now } = opts;
  let relay: RelayClient | null = null;

  return {
    client: () => relay,
    cap: () => (relay === null ? 0 : relay.maxConnections * FORWARDS_PER_RELAY_CONNECTION),
    swap(next) {
      const previous = relay;
      relay = next === null ? null : createRelayClient(next, { ehloName: config.smtp.hostname });
      return previous;
    },
    releaseHeld() {
      if (relay === null) return;
      const n = store.releaseHeld(db, now());
      if (n > 0) logger.info("held forwards released to the relay", { count: n, relay: relay.label });
    },
  };
}
