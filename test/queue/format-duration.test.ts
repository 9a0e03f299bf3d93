/** `mailgw queue list`'s AGE and NEXT TRY columns. */
import { expect, test } from "bun:test";
import { formatDuration } from "../../src/queue/queue-admin.ts";

test("whole units cut down; seconds kept below 10 minutes, so a retry in 119 s is not shown as in 1m", () => {
  expect(formatDuration(0)).toBe("0s");
  expect(formatDuration(59)).toBe("59s");
  expect(formatDuration(60)).toBe("1m");
  expect(formatDuration(119)).toBe("1m59s");
  expect(formatDuration(120)).toBe("2m");
  expect(formatDuration(599)).toBe("9m59s");
  expect(formatDuration(659)).toBe("10m");
  expect(formatDuration(3600 + 5 * 60 + 7)).toBe("1h5m");
  expect(formatDuration(3 * 86400 + 7200)).toBe("3d2h");
});
