import { describe, expect, test } from "bun:test";
import { isMessageId, MESSAGE_ID_LENGTH, messageIdTime, newMessageId } from "../../src/spool/ids.ts";

describe("message ids", () => {
  test("url- and path-safe, unique, time-sortable", () => {
    const ids = Array.from({ length: 2000 }, (_, i) => newMessageId(1_700_000_000_000 + i));
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) {
      expect(id).toHaveLength(MESSAGE_ID_LENGTH);
      expect(id).toMatch(/^[0-9a-z]+$/);
      expect(isMessageId(id)).toBe(true);
    }
    expect([...ids].sort()).toEqual(ids);
    expect(messageIdTime(ids[5]!)).toBe(1_700_000_000_005);
  });

  test("anything else is not an id", () => {
    for (const bad of ["", "../../etc/passwd", "u".repeat(26), `${newMessageId()}/`, newMessageId().toUpperCase(), `${newMessageId()}a`]) {
      expect(isMessageId(bad)).toBe(false);
    }
  });
});
