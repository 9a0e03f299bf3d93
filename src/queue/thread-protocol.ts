/**
 * Messages between the main thread (its side: delivery-thread-host.ts, the start handshake in
 * thread-launch.ts) and the delivery thread (delivery-thread.ts). Plain data only (structured
 * clone). Trusts: both ends are this build.
 */
import type { Config, RelayConfig } from "../config/config.ts";
import type { LogFields } from "../log/logger.ts";
import type { SessionCounts } from "../store/counters.ts";

export type ThreadRequest =
  | { kind: "init"; config: Config }
  | { kind: "wake" }
  | { kind: "reload-relay"; relay: RelayConfig | null }
  /** SMTP sessions that ended and refusals (serve/session-counters.ts), committed here on this thread's connection. */
  | { kind: "count-sessions"; at: number; counts: SessionCounts }
  | { kind: "stop" };

export interface ThreadLogRecord {
  level: "debug" | "info" | "warn" | "error";
  msg: string;
  fields: LogFields;
}

export type ThreadReply =
  | { kind: "ready" }
  | { kind: "started" }
  | { kind: "start-failed"; error: string }
  | { kind: "logs"; records: ThreadLogRecord[]; inFlight: number }
  | { kind: "stopped" };
