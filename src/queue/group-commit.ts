/**
 * Group commit: items submitted during one turn of the event loop are committed together by
 * one call of `commit` (one transaction, one fsync), on the next turn. While that commit's
 * fsync blocks the loop, finished work piles up and forms the next group, so under load
 * the fsync cost is shared by however many items finished meanwhile.
 *
 * Failure: if `commit` throws, every item of that group is rejected with the error.
 */
export function createGroupCommit<T, R>(commit: (items: T[]) => R[]): (item: T) => Promise<R> {
  let pending: { item: T; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];
  let scheduled = false;

  function flush(): void {
    scheduled = false;
    const group = pending;
    pending = [];
    let results: R[];
    try {
      results = commit(group.map((p) => p.item));
    } catch (err) {
      for (const p of group) p.reject(err);
      return;
    }
    group.forEach((p, i) => p.resolve(results[i] as R));
  }

  return (item) =>
    new Promise<R>((resolve, reject) => {
      pending.push({ item, resolve, reject });
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    });
}
