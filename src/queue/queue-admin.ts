/**
 * What `mailgw queue list|retry|drop` does, on a data dir that a running `serve` may be using
 * at the same time (WAL + busy_timeout; the worker notices changes on its next poll).
 *
 * Trusts: the database schema. Failure: an unknown ID or nothing to act on throws a CliError
 * (exit 1) with one line saying what to do; SQLite errors propagate as CliErrors from the
 * caller.
 */
import type { Database } from "bun:sqlite";
import { CliError } from "../errors.ts";
import { displayTarget } from "../http/stats-data.ts";
import type { DeliveryState } from "../types.ts";
import { parseAddresses } from "./attempt.ts";
import {
  dropDeliveries, dropFailedDeliveries, findDeliveries, listQueue, PENDING_STATES, type QueueEntry, RETRYABLE_STATES, retryNow,
} from "./queue-store.ts";
import { liftSuspension, readSuspension, RELAY_FIX_HINT, RELAY_SUSPENDED_PREFIX, type RelaySuspension } from "./relay-suspension.ts";
import type { SpoolAccess } from "./spool-access.ts";
import { recordWebhookRetry } from "./webhook-pauses.ts";

/**
 * Rows `queue list` prints at most, the oldest first (a huge backlog must not flood a terminal);
 * the footer (or, with --json, stderr) says how many there are in all.
 */
export const LIST_LIMIT = 10_000;

const ALL_STATES: readonly DeliveryState[] = ["queued", "deferred", "held", "delivering", "delivered", "failed"];

/** Parses `--state a,b` into states; empty → the pending states. */
export function parseStates(arg: string | undefined): DeliveryState[] {
  if (arg === undefined || arg.trim() === "") return [...PENDING_STATES];
  const states = arg.split(",").map((s) => s.trim().toLowerCase()).filter(Boolean);
  // Only commas (a script's empty list joined): no state named, and an empty IN () printed
  // "queue is empty" over a queue with deliveries in it.
  if (states.length === 0) throw new CliError(`--state=${arg} names no delivery state: use ${ALL_STATES.join(", ")} (comma-separated)`);
  for (const s of states) {
    if (!(ALL_STATES as readonly string[]).includes(s)) {
      throw new CliError(`--state=${s} is not a delivery state: use ${ALL_STATES.join(", ")} (comma-separated)`);
    }
  }
  return states as DeliveryState[];
}

export interface ListedEntry {
  id: string;
  delivery: number;
  kind: string;
  state: DeliveryState;
  target: string;
  ageSeconds: number;
  attempts: number;
  nextAttemptAt: string | null;
  lastError: string | null;
  rule: string | null;
  category: string;
}

export function listEntries(db: Database, states: readonly DeliveryState[], now: number): ListedEntry[] {
  return listQueue(db, states, LIST_LIMIT).map((e) => ({
    id: e.messageId,
    delivery: e.id,
    kind: e.kind,
    state: e.state,
    // A webhook URL shows no credentials or query string, as on the stats page and in the logs:
    // they often carry the receiver's token, and queue output gets pasted into tickets.
    target: e.kind === "forward" ? parseAddresses(e.target).join(",") : displayTarget(e.kind, e.target),
    ageSeconds: Math.max(0, Math.round((now - e.createdAt) / 1000)),
    attempts: e.attempts,
    nextAttemptAt: e.state === "queued" || e.state === "deferred" ? new Date(e.nextAttemptAt).toISOString() : null,
    lastError: e.lastError,
    rule: e.rule,
    category: e.category,
  }));
}

/** The line saying that a list was cut at LIST_LIMIT, and how to see the rest; null when it was not. */
export function truncationNote(shown: number, total: number): string | null {
  if (total <= shown) return null;
  return `${shown} of ${total} deliveries shown (the oldest): narrow the list with --state, or query the deliveries table with sqlite3 for the rest`;
}

/**
 * Aligned text table for a terminal, one delivery per line; "queue is empty" when none.
 * `total`: how many there are in all (more than `entries` when the list was cut at LIST_LIMIT).
 */
export function formatList(entries: readonly ListedEntry[], now: number, total = entries.length): string {
  if (entries.length === 0) return "queue is empty\n";
  const header = ["ID", "#", "STATE", "KIND", "AGE", "ATTEMPTS", "NEXT TRY", "TARGET", "LAST ERROR"];
  const rows = entries.map((e) => [
    e.id,
    String(e.delivery),
    e.state,
    e.kind,
    formatDuration(e.ageSeconds),
    String(e.attempts),
    e.nextAttemptAt === null ? "-" : nextTry(Date.parse(e.nextAttemptAt), now),
    e.target,
    // The suspension's prefix does not push the error (and a hint's fix) out of the column.
    oneLine(e.lastError ?? "-", 120 + (e.lastError?.startsWith(RELAY_SUSPENDED_PREFIX) ? RELAY_SUSPENDED_PREFIX.length : 0)),
  ]);
  // Terminal columns, not UTF-16 units: an EAI target (用户@例子.example) takes two a character.
  const width = (cell: string): number => Bun.stringWidth(cell);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => width(r[i] ?? ""))));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c + " ".repeat(Math.max(0, (widths[i] ?? 0) - width(c))))).join("  ");
  const footer = truncationNote(entries.length, total) ?? `${entries.length} deliver${entries.length === 1 ? "y" : "ies"}`;
  return [line(header), ...rows.map(line)].join("\n") + `\n${footer}\n`;
}

/**
 * For `queue list` when no serve runs: rows left `delivering` were under way at a crash or kill -9,
 * and stay so until serve starts again. null when there are none.
 */
export function interruptedNote(entries: readonly ListedEntry[], dataDir: string): string | null {
  const n = entries.filter((e) => e.state === "delivering").length;
  if (n === 0) return null;
  return `note: no serve is running on ${dataDir}: ${n === 1 ? "the delivery" : `the ${n} deliveries`} shown as delivering ` +
    `${n === 1 ? "was" : "were"} under way when it stopped; serve attempts ${n === 1 ? "it" : "them"} again when it starts ` +
    `(the relay or webhook may then receive ${n === 1 ? "it" : "them"} twice)`;
}

/**
 * For `queue list`: the relay is suspended (relay-suspension.ts), so forwards wait for one probe;
 * null when it is not. `serveStopped`: what the last serve left, which the next one probes at once.
 */
export function suspensionNote(db: Database, now: number, serveStopped: boolean): string | null {
  const s = readSuspension(db);
  if (s === null) return null;
  const since = `since ${new Date(s.since).toISOString()}`;
  if (serveStopped) {
    return `note: the relay ${s.relay} was suspended (${since}) when serve stopped: ${oneLine(s.reason, 300)}; ` +
      `serve tries one forward when it starts, and the others if that one goes (mailgw queue retry --all lifts it)`;
  }
  const probe = s.until <= now ? "now" : `in ${formatDuration(Math.ceil((s.until - now) / 1000))}`;
  return `relay ${s.relay} suspended ${since} (next probe: ${probe}): ${oneLine(s.reason, 300)}
` +
    `forwards wait without attempts; ${RELAY_FIX_HINT}`;
}

/** Resolves an ID argument: `<message id>`, `<message id>#<n>` or a delivery number `<n>`. */
export function resolveRef(db: Database, ref: string): QueueEntry[] {
  const m = /^([0-9a-z]+)#(\d+)$/.exec(ref);
  const found = m ? findDeliveries(db, m[2] ?? "").filter((e) => e.messageId === m[1]) : findDeliveries(db, ref);
  if (found.length === 0) throw new CliError(`no delivery ${ref} in the queue (see mailgw queue list --state failed,deferred,held)`);
  return found;
}

export interface RetryResult {
  /** Deliveries made due now. */
  retried: number;
  /** Of those, forwards that were `held`: a serve without a relay holds them again at once. */
  held: number;
  /** The relay suspension this retry lifted (the admin fixed the relay or its password), if any. */
  lifted: RelaySuspension | null;
  /** `retry ID` of queued webhook posts: receivers' Retry-After waits were ended instead (how many posts). */
  waitEnded?: number;
}

/**
 * `serveStopped`: no serve runs on this data dir (serveRunning), so a `delivering` row is one a
 * crash interrupted, which serve's start makes due anyway: the refusal says that instead.
 */
export function retry(db: Database, ref: string | null, now: number, serveStopped = false): RetryResult {
  if (ref === null) {
    const held = db.query<{ n: number }, []>(`SELECT COUNT(*) AS n FROM deliveries WHERE state = 'held'`).get()?.n ?? 0;
    const retried = retryNow(db, null, now);
    // Even when nothing was retryable, as for the relay's suspension below: the posts a receiver's
    // Retry-After holds show `queued`, NEXT TRY now, and once the post that got it was dropped (or
    // claimed), `retry --all` left them waiting for the rest of the pause (up to an hour).
    recordWebhookRetry(db);
    return { retried, held, lifted: liftSuspension(db) };
  }
  const entries = resolveRef(db, ref);
  const retryable = entries.filter((e) => RETRYABLE_STATES.includes(e.state));
  // A post a receiver's Retry-After holds shows `queued`, NEXT TRY now (README): retrying it by
  // id ends the wait, as `retry --all` does, instead of refusing a state the admin cannot change.
  if (retryable.length === 0 && entries.every((e) => e.kind === "webhook" && e.state === "queued")) {
    recordWebhookRetry(db);
    return { retried: 0, held: 0, lifted: null, waitEnded: entries.length };
  }
  if (retryable.length === 0) refuseRetry(ref, entries, serveStopped);
  // Lifted first: a running worker that saw the forwards due while still suspended deferred them again.
  const lifted = retryable.some((e) => e.kind === "forward") ? liftSuspension(db) : null;
  const retried = retryNow(db, retryable.map((e) => e.id), now);
  // Changed since the lookup (serve claimed it, another `queue retry` or a drop got there first):
  // the answer a retry a moment later gives, not "0 deliveries queued for a new attempt" with exit 0.
  if (retried === 0) refuseRetry(ref, resolveRef(db, ref), serveStopped);
  // A receiver's Retry-After no longer holds them (webhook-pauses.ts), as a suspension no longer holds forwards.
  if (retryable.some((e) => e.kind === "webhook")) recordWebhookRetry(db);
  return { retried, held: retryable.filter((e) => e.state === "held").length, lifted };
}

/** Why none of `entries` (what `ref` names) can be retried: always throws. */
function refuseRetry(ref: string, entries: readonly QueueEntry[], serveStopped: boolean): never {
  if (serveStopped && entries.every((e) => e.state === "delivering")) {
    throw new CliError(`delivery ${ref} was being delivered when serve stopped: serve attempts it again when it starts (at once, or after the backoff if its attempt before was interrupted too; nothing to retry now)`);
  }
  const states = [...new Set(entries.map((e) => e.state))].join(", ");
  throw new CliError(`delivery ${ref} is ${states}: only ${RETRYABLE_STATES.join(", ")} deliveries can be retried`);
}

/** `queue retry`'s report; held forwards get a note, or "queued for a new attempt" would promise a send no relay makes. */
export function formatRetry(r: RetryResult): string {
  if (r.waitEnded !== undefined) {
    return `${r.waitEnded} webhook deliver${r.waitEnded === 1 ? "y is" : "ies are"} queued already: receivers' Retry-After waits are ended, ` +
      `so ${r.waitEnded === 1 ? "it is" : "they are"} posted as soon as ${r.waitEnded === 1 ? "its URL has" : "their URLs have"} a free slot\n`;
  }
  let out = `${r.retried} deliver${r.retried === 1 ? "y" : "ies"} queued for a new attempt\n`;
  if (r.held > 0) {
    out += `note: ${r.held} of them ${r.held === 1 ? "was a forward" : "were forwards"} held for want of a relay: serve holds ` +
      `${r.held === 1 ? "it" : "them"} again until RELAY_SMTP_HOST is set (restart it, or SIGHUP with .env / --env-file)\n`;
  }
  if (r.lifted !== null) {
    out += `the relay ${r.lifted.relay} is no longer suspended: serve tries it again now, with the relay settings it has ` +
      `(a RELAY_* setting changed since, such as the password, needs SIGHUP or a restart)\n`;
  }
  return out;
}

/**
 * Removes the deliveries, then releases spool files nothing needs any more. A delivered one is
 * not in the queue: dropping a message by id leaves its history (and `queue list`'s count) alone.
 */
export async function drop(db: Database, spool: SpoolAccess, ref: string): Promise<string> {
  const entries = resolveRef(db, ref).filter((e) => e.state !== "delivered");
  if (entries.length === 0) throw new CliError(`delivery ${ref} was delivered: nothing to drop`);
  const { dropped, inFlight } = dropDeliveries(db, entries.map((e) => e.id));
  // Gone or delivered since the lookup (another `queue drop`, or the attempt under way ended):
  // the error a drop run a moment later gives, not "0 deliveries dropped" with exit 0.
  if (dropped === 0 && resolveRef(db, ref).every((e) => e.state === "delivered")) throw new CliError(`delivery ${ref} was delivered: nothing to drop`);
  for (const messageId of new Set(entries.map((e) => e.messageId))) await spool.release(messageId);
  let out = `${dropped} deliver${dropped === 1 ? "y" : "ies"} dropped\n`;
  // The attempt under way is not recalled: the relay or webhook may still take the message.
  if (inFlight > 0) {
    out += `${inFlight === dropped ? (dropped === 1 ? "it" : "all of them") : `${inFlight} of them`} ${inFlight === 1 ? "was" : "were"} being delivered: ` +
      `the relay or webhook may still receive ${inFlight === 1 ? "it" : "them"} (the attempt under way is not recalled); no further attempt will be made\n`;
  }
  return out;
}

/**
 * `queue drop --failed`: every delivery mailgw gave up on, as `postsuper -d ALL deferred` clears
 * Postfix's; their spool files go once nothing else needs them (an archived copy stays).
 */
export async function dropFailed(db: Database, spool: SpoolAccess): Promise<string> {
  const messageIds = dropFailedDeliveries(db);
  if (messageIds.length === 0) return "no failed deliveries: nothing dropped\n";
  for (const messageId of new Set(messageIds)) await spool.release(messageId);
  return `${messageIds.length} failed deliver${messageIds.length === 1 ? "y" : "ies"} dropped\n`;
}

/**
 * Whole units, cut down; below 10 minutes with the seconds, so a retry due in 119 s reads
 * `in 1m59s`, not `in 1m` (a webhook's `Retry-After: 120` looked ignored).
 */
export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${seconds}s`;
  const m = Math.floor(seconds / 60);
  if (m < 10) return `${m}m${seconds % 60 ? `${seconds % 60}s` : ""}`;
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${m % 60 ? `${m % 60}m` : ""}`;
  return `${Math.floor(h / 24)}d${h % 24 ? `${h % 24}h` : ""}`;
}

function nextTry(at: number, now: number): string {
  return at <= now ? "now" : `in ${formatDuration(Math.ceil((at - now) / 1000))}`;
}

/**
 * One line for the terminal: whitespace runs become one space, and other control characters
 * (an ESC from a relay's or a webhook receiver's reply would drive the admin's terminal), bidi
 * overrides and isolates (they reversed the rest of the row) and zero-width characters a `?`.
 */
function oneLine(s: string, max: number): string {
  const line = s.replace(/\s+/g, " ").replace(/[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/g, "?").trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}
