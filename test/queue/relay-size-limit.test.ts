import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { readRelaySizeLimit, recordRelaySizeLimit, relaySizeLimitReader, RELAY_SIZE_MARGIN_BYTES, tooBigForRelay } from "../../src/queue/relay-size-limit.ts";

function db(): Database {
  const d = new Database(":memory:");
  d.exec("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
  return d;
}

test("recorded per relay; SIZE none or 0 removes it; an unreadable row is no limit", () => {
  const d = db();
  expect(readRelaySizeLimit(d)).toBeNull();
  recordRelaySizeLimit(d, "smtp.example:587", 10_240_000);
  expect(readRelaySizeLimit(d)).toEqual({ relay: "smtp.example:587", bytes: 10_240_000 });
  recordRelaySizeLimit(d, "smtp.example:587", null);
  expect(readRelaySizeLimit(d)).toBeNull();
  d.query("INSERT INTO meta VALUES ('relay_size_limit', '{not json')").run();
  expect(readRelaySizeLimit(d)).toBeNull();
});

test("the reader answers for the current relay only, and reads again after a second", async () => {
  const d = db();
  let current: string | null = "a.example:587";
  const limit = relaySizeLimitReader(d, () => current);
  recordRelaySizeLimit(d, "a.example:587", 5_000_000);
  expect(limit()).toBe(5_000_000);
  // A SIGHUP that changed the relay: the old relay's limit does not apply to the new one.
  current = "b.example:587";
  expect(limit()).toBeNull();
  current = null;
  expect(limit()).toBeNull();
  current = "a.example:587";
  recordRelaySizeLimit(d, "a.example:587", 9_000_000);
  expect(limit()).toBe(5_000_000); // cached
  await Bun.sleep(1050);
  expect(limit()).toBe(9_000_000);
});

test("too big: with the margin for what the relay counts beyond our bytes; no limit known: never", () => {
  expect(tooBigForRelay(10_000_000, null)).toBe(false);
  expect(tooBigForRelay(10_240_000 - RELAY_SIZE_MARGIN_BYTES, 10_240_000)).toBe(false);
  expect(tooBigForRelay(10_240_000 - RELAY_SIZE_MARGIN_BYTES + 1, 10_240_000)).toBe(true);
  expect(tooBigForRelay(10_239_000, 10_240_000)).toBe(true);
});
