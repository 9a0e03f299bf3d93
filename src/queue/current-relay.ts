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
import { describeError } from "../errors.ts";
import { hostPort } from "../host-port.ts";
import type { Logger } from "../log/logger.ts";
import * as store from "./queue-store.ts";
import { recordRelaySizeLimit, RELAY_SIZE_MARGIN_BYTES } from "./relay-size-limit.ts";

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

  /**
   * What a set-up session's relay advertised, recorded when it changes (relay-size-limit.ts: the
   * intake refuses bigger forwards at DATA from then on), with a warning when it is below
   * MAX_MESSAGE_SIZE_MB: the admin learns why such forwards now get 552.
   */
  const sizeNoter = (label: string) => {
    let noted: number | null | undefined;
    return (bytes: number | null): void => {
      if (bytes === noted) return;
      try {
        recordRelaySizeLimit(db, label, bytes);
        noted = bytes;
      } catch (err) {
        logger.warn("recording the relay's SIZE failed; retried at its next session", { relay: label, error: describeError(err) });
        return;
      }
      if (bytes !== null && bytes - RELAY_SIZE_MARGIN_BYTES < config.smtp.maxMessageBytes) {
        logger.warn(
          "the relay takes smaller messages than MAX_MESSAGE_SIZE_MB allows: forwards too big for it are refused at DATA (552 5.3.4); raise its limit, or lower MAX_MESSAGE_SIZE_MB to match",
          { relay: label, relay_size_bytes: bytes, max_message_bytes: config.smtp.maxMessageBytes },
        );
      }
    };
  };

  return {
    client: () => relay,
    cap: () => (relay === null ? 0 : relay.maxConnections * FORWARDS_PER_RELAY_CONNECTION),
    swap(next) {
      const previous = relay;
      relay = next === null ? null : createRelayClient(next, { ehloName: config.smtp.hostname, onSessionReady: sizeNoter(hostPort(next.host, next.port)) });
      return previous;
    },
    releaseHeld() {
      if (relay === null) return;
      const n = store.releaseHeld(db, now());
      if (n > 0) logger.info("held forwards released to the relay", { count: n, relay: relay.label });
    },
  };
}
