/**
 * The delivery worker's caps (worker.ts): which due deliveries a claim may read and start, given
 * the attempts in flight. Pure: the worker passes what runs and its caps. Each target (the relay,
 * a webhook URL) has its own share of the slots, and of the large-message slots, so one slow or
 * stalled target never holds every slot the others need.
 *
 * Trusts: the worker's accounting. Failure: none.
 */
import type { ClaimedDelivery, ClaimLimits } from "./queue-store.ts";

/**
 * Messages from this size on count as large: an attempt holds several times a message's size in
 * memory (a webhook: the bytes, the parse, base64 and the JSON body; a forward: the bytes and
 * their CRLF-normalized copy), so 48 attempts of 25 MB messages could take gigabytes.
 */
export const LARGE_MESSAGE_BYTES = 1024 * 1024;
/** Large messages in flight at once, forwards and webhooks together (small ones are not held back). */
export const MAX_LARGE_IN_FLIGHT = 2;
/**
 * Large messages in flight to one target: a relay or receiver that never answers holds at most
 * this many (for up to the attempt's deadline), never every large slot, so large messages to the
 * other targets still go.
 */
export const MAX_LARGE_PER_TARGET = MAX_LARGE_IN_FLIGHT - 1;
/** Attempts running at once against one webhook URL, so a slow receiver cannot take every slot. */
export const MAX_PER_WEBHOOK_TARGET = 4;
/**
 * The same for a URL not known to answer: one probe at a time until a post gets an answer (a 2xx,
 * or a refusal for good), as Postfix lowers a failing destination's concurrency. That covers a URL
 * whose last attempt failed for now (timed out, refused, 5xx), and one not tried since the start:
 * four receivers that never answer would otherwise hold every webhook slot from their first posts
 * until the 120 s deadline, and take each slot a timeout frees again with their older posts.
 */
export const MAX_PER_UNPROVEN_WEBHOOK_TARGET = 1;
/**
 * Webhook slots left to the URLs whose last attempt did not fail: the failing ones together hold
 * the rest at most. Sixteen failing URLs would otherwise hold every slot, and take each slot a
 * failure frees again with their older posts, so a healthy URL's posts waited until all of those
 * were tried (120 s each when the receivers never answer).
 */
export const WEBHOOK_SLOTS_KEPT_FROM_FAILING = MAX_PER_WEBHOOK_TARGET;

/** What the worker has in flight, and its caps. */
export interface SlotUse {
  running: readonly { key: string; large: boolean }[];
  /** Forwards the relay may have in flight; null without a relay (forwards are then held). */
  relayCap: number | null;
  /** Webhook attempts in flight at most, all URLs together. */
  webhookCap: number;
  /** Keys of the webhook URLs whose last attempt got an answer (the others get one slot). */
  answering: ReadonlySet<string>;
  /** The webhook URLs (not keys) whose last attempt failed for now. */
  failing: ReadonlyMap<string, unknown>;
  /** The webhook URLs (not keys) whose receiver asked for time (Retry-After) that has not passed: none of their posts start. */
  paused?: ReadonlySet<string>;
}

/**
 * The URLs of `until` (URL → unix ms a receiver's Retry-After runs to) still paused at `now`;
 * the entries that have run out are removed. A receiver that answers 429 or 503 with Retry-After
 * asks the client to wait (RFC 9110 §10.2.3, RFC 6585 §4), not one request: posting the
 * next message at once only earns it another refusal.
 */
export function pausedUrls(until: Map<string, number>, now: number): ReadonlySet<string> {
  for (const [url, at] of until) if (at <= now) until.delete(url);
  // Read at every claim and after every attempt: nothing allocated while no receiver asked for quiet.
  return until.size === 0 ? NO_URLS : new Set(until.keys());
}

const NO_URLS: ReadonlySet<string> = new Set();

/** The running attempts' key for a delivery: one per relay, one per webhook URL. */
export function keyOf(d: ClaimedDelivery): string {
  return d.kind === "forward" ? "relay" : `webhook:${d.target}`;
}

export function isLarge(d: ClaimedDelivery): boolean {
  return d.size >= LARGE_MESSAGE_BYTES;
}

/** Attempts the key may have in flight at once. */
function targetCap(use: SlotUse, key: string): number {
  if (key === "relay") return use.relayCap ?? Infinity;
  return use.answering.has(key) ? MAX_PER_WEBHOOK_TARGET : MAX_PER_UNPROVEN_WEBHOOK_TARGET;
}

function isFailing(use: SlotUse, key: string): boolean {
  return key !== "relay" && use.failing.has(key.slice("webhook:".length));
}

function isPaused(use: SlotUse, key: string): boolean {
  return key !== "relay" && (use.paused?.has(key.slice("webhook:".length)) ?? false);
}

/** Webhook attempts the failing URLs may have in flight together. */
function failingCap(use: SlotUse): number {
  return Math.max(1, use.webhookCap - WEBHOOK_SLOTS_KEPT_FROM_FAILING);
}

export function countByKey(use: SlotUse, key: string): number {
  return use.running.filter((r) => r.key === key).length;
}

/** Large messages in flight per key. */
function largeByKey(use: SlotUse): Map<string, number> {
  const held = new Map<string, number>();
  for (const r of use.running) if (r.large) held.set(r.key, (held.get(r.key) ?? 0) + 1);
  return held;
}

const sum = (counts: Map<string, number>): number => [...counts.values()].reduce((a, b) => a + b, 0);

/** Claim sizes from the free slots: a claim never reads rows it could not start now. */
export function claimLimits(use: SlotUse, free: number): ClaimLimits {
  const webhookTargets = new Set<string>();
  for (const r of use.running) {
    if (r.key !== "relay" && countByKey(use, r.key) >= targetCap(use, r.key)) webhookTargets.add(r.key.slice("webhook:".length));
  }
  // Not read at all once they hold their share: their older rows would fill the read (claimDue).
  if (use.running.filter((r) => isFailing(use, r.key)).length >= failingCap(use)) for (const url of use.failing.keys()) webhookTargets.add(url);
  for (const url of use.paused ?? []) webhookTargets.add(url);
  const relayRunning = countByKey(use, "relay");
  // Without a relay, forwards were just held; any claimed meanwhile go back to held in attempt().
  const forwards = use.relayCap === null ? free : Math.min(free, Math.max(0, use.relayCap - relayRunning));
  const webhooks = Math.min(free, Math.max(0, use.webhookCap - (use.running.length - relayRunning)));
  const held = largeByKey(use);
  const largeFree = sum(held) < MAX_LARGE_IN_FLIGHT;
  const large = {
    bytes: LARGE_MESSAGE_BYTES,
    forwards: largeFree && (held.get("relay") ?? 0) < MAX_LARGE_PER_TARGET,
    webhooks: largeFree,
    webhookTargets: [...held].filter(([k, n]) => k !== "relay" && n >= MAX_LARGE_PER_TARGET).map(([k]) => k.slice("webhook:".length)),
  };
  return { forwards, webhooks, webhookTargets: [...webhookTargets], large };
}

/** Picks up to `free` candidates without pushing any target past its cap. */
export function applyCaps(use: SlotUse, candidates: readonly ClaimedDelivery[], free: number): ClaimedDelivery[] {
  const counts = new Map<string, number>();
  let webhooks = use.running.length - countByKey(use, "relay");
  let failing = use.running.filter((r) => isFailing(use, r.key)).length;
  const largeHeld = largeByKey(use);
  let large = sum(largeHeld);
  const chosen: ClaimedDelivery[] = [];
  for (const d of candidates) {
    if (chosen.length >= free) break;
    const key = keyOf(d);
    const n = counts.get(key) ?? countByKey(use, key);
    if (n >= targetCap(use, key) || isPaused(use, key)) continue;
    if (key !== "relay" && webhooks >= use.webhookCap) continue;
    if (isFailing(use, key) && failing >= failingCap(use)) continue;
    if (isLarge(d)) {
      if (large >= MAX_LARGE_IN_FLIGHT || (largeHeld.get(key) ?? 0) >= MAX_LARGE_PER_TARGET) continue;
      large++;
      largeHeld.set(key, (largeHeld.get(key) ?? 0) + 1);
    }
    if (key !== "relay") webhooks++;
    if (isFailing(use, key)) failing++;
    counts.set(key, n + 1);
    chosen.push(d);
  }
  return chosen;
}
