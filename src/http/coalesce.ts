/**
 * One computation for every caller that asks before it starts. A request that arrives at time t
 * may be answered by any snapshot taken after t, so the requests of a burst (stats pages opened
 * together, each tab's refresh, a Prometheus scrape) share one snapshot instead of each running
 * the same queries. The computation runs in a later turn of the event loop (`setImmediate`):
 * SMTP sessions get their turn before it, and requests that arrive meanwhile join it.
 *
 * Why: the snapshot's queries are synchronous (bun:sqlite) and take ~80 ms on a year of data, so
 * 30 requests at once held every SMTP session for ~2.4 s; now they cost one snapshot.
 * Failure: a computation that throws rejects every caller that joined it; the next call starts
 * a new one.
 */
export function coalesced<T>(compute: () => T): () => Promise<T> {
  let pending: Promise<T> | null = null;
  return () => {
    if (pending !== null) return pending;
    const next = new Promise<T>((resolve, reject) => {
      setImmediate(() => {
        // From here on, a new caller's request may postdate the data read below: it starts its own.
        pending = null;
        try {
          resolve(compute());
        } catch (err) {
          reject(err);
        }
      });
    });
    pending = next;
    return next;
  };
}
