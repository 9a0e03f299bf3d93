/**
 * /healthz's write probes run one at a time (serve/gateway.ts oneAtATime): checks that come while
 * one runs share its answer, so a burst of checks during a write failure is one write and one
 * sync, not one each; the next check after it settles probes again.
 */
import { expect, test } from "bun:test";
import { oneAtATime } from "../../src/serve/gateway.ts";

test("concurrent calls share the running probe; a later call runs a new one, also after a failure", async () => {
  let runs = 0;
  let fail = false;
  const probe = oneAtATime(async () => {
    runs++;
    await Bun.sleep(20);
    if (fail) throw new Error("probe failed");
    return runs;
  });
  expect(await Promise.all(Array.from({ length: 10 }, () => probe()))).toEqual(Array(10).fill(1));
  expect(runs).toBe(1);
  expect(await probe()).toBe(2);
  fail = true;
  expect(await Promise.allSettled([probe(), probe()])).toEqual([
    { status: "rejected", reason: new Error("probe failed") },
    { status: "rejected", reason: new Error("probe failed") },
  ]);
  expect(runs).toBe(3);
  fail = false;
  expect(await probe()).toBe(4);
});
