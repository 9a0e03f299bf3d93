/**
 * The largest message the relay takes, as its EHLO advertised it (SIZE, RFC 1870), kept in the
 * meta row `relay_size_limit` by the delivery side when a relay session is set up, and read by
 * the intake (pipeline/receiver.ts) to refuse at DATA a forward the relay would refuse: a relay
 * with a lower limit than MAX_MESSAGE_SIZE_MB (a Postfix smarthost's default is 10,240,000
 * bytes, mailgw's 25 MB) got those forwards after our 250 and failed them for good with 552.
 * Refused at DATA instead (552 5.3.4), the sender's own server bounces it, as Postfix would
 * bounce what its relayhost refuses. Unknown until the first session to this relay is set up.
 *
 * Trusts: the meta table. Failure: the writer's database errors go to the caller (logged there);
 * the reader treats a missing or unreadable row as "no limit known".
 */
import type { Database } from "bun:sqlite";

const META_KEY = "relay_size_limit";
/** How long the intake reuses what it read (the row changes when a relay session is set up). */
const READ_TTL_MS = 1000;
/**
 * Room left for what the relay counts beyond our bytes: a Postfix smarthost counts its queue
 * file (its own Received: line and envelope records; a message 1,000 bytes under its limit was
 * refused "message file too big"), and bare line ends become CRLF on the way out.
 */
export const RELAY_SIZE_MARGIN_BYTES = 16 * 1024;

export interface RelaySizeLimit {
  /** The relay's `host:port`, as RelayClient.label. */
  relay: string;
  /** Its advertised SIZE in bytes. */
  bytes: number;
}

/** Records what the relay advertised; `bytes` null (no SIZE, or SIZE 0: no limit) removes the row. */
export function recordRelaySizeLimit(db: Database, relay: string, bytes: number | null): void {
  if (bytes === null) db.query(`DELETE FROM meta WHERE key = ?`).run(META_KEY);
  else db.query(`INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)`).run(META_KEY, JSON.stringify({ relay, bytes } satisfies RelaySizeLimit));
}

export function readRelaySizeLimit(db: Database): RelaySizeLimit | null {
  const row = db.query<{ value: string }, [string]>(`SELECT value FROM meta WHERE key = ?`).get(META_KEY);
  if (!row) return null;
  try {
    const v = JSON.parse(row.value) as Partial<RelaySizeLimit>;
    return typeof v.relay === "string" && typeof v.bytes === "number" && v.bytes > 0 ? { relay: v.relay, bytes: v.bytes } : null;
  } catch {
    return null;
  }
}

/**
 * The limit of the relay serve forwards through now (`currentRelay`: its `host:port`, null
 * without one), read at most once a second; null when unknown or for another relay (a SIGHUP
 * changed RELAY_SMTP_HOST: the new one's limit is learned at its first session).
 */
export function relaySizeLimitReader(db: Database, currentRelay: () => string | null): () => number | null {
  let readAt = -Infinity;
  let known: RelaySizeLimit | null = null;
  return () => {
    const relay = currentRelay();
    if (relay === null) return null;
    const t = performance.now();
    if (t - readAt >= READ_TTL_MS) {
      readAt = t;
      try {
        known = readRelaySizeLimit(db);
      } catch {
        known = null;
      }
    }
    return known !== null && known.relay === relay ? known.bytes : null;
  };
}

/** Whether a message of `size` bytes is too big for a relay taking `limit` (null: no limit known). */
export function tooBigForRelay(size: number, limit: number | null): boolean {
  return limit !== null && size + RELAY_SIZE_MARGIN_BYTES > limit;
}
