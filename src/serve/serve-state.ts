/**
 * What changes while `mailgw serve` runs, in one place: set by the service that owns it (start,
 * stop, SIGHUP) and read by the parts wired before it started (the intake sink, the pipeline,
 * the status page). Separate so that those parts can be built in their own functions.
 */
import type { RelayConfig } from "../config/config.ts";
import type { HeapGovernor } from "./heap-governor.ts";

export interface ServeState {
  /** The heap governor, once its service has started. */
  heap: HeapGovernor | null;
  /** The relay in force: a SIGHUP can add, change or remove it. */
  relay: RelayConfig | null;
  /** Where SMTP listens; null before it does and from its stop on (`/healthz`). */
  smtpAddress: { host: string; port: number } | null;
}
