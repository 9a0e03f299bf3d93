/**
 * The header block reader's limits at their exact values: MAX_HEADER_FIELDS fields are all kept
 * without a note, one more is noted and dropped (unless it is one the facts read by name); a
 * field of MAX_HEADER_FIELD_BYTES is whole, one byte more is cut and noted.
 */
import { expect, test } from "bun:test";
import { splitHeaderBlock } from "../../src/parse/header-block.ts";
import { MAX_HEADER_FIELD_BYTES, MAX_HEADER_FIELDS } from "../../src/parse/limits.ts";

const block = (lines: string[]) => splitHeaderBlock(new TextEncoder().encode(`${lines.join("\r\n")}\r\n\r\nbody\r\n`));
const fields = (n: number) => Array.from({ length: n }, (_, i) => `X-F${i}: v`);

test("exactly MAX_HEADER_FIELDS fields: all kept, no note; one more: noted, dropped, but a Subject past it kept", () => {
  const atLimit = block(fields(MAX_HEADER_FIELDS));
  expect(atLimit.fields).toHaveLength(MAX_HEADER_FIELDS);
  expect(atLimit.notes).toEqual([]);
  const over = block([...fields(MAX_HEADER_FIELDS + 1), "Subject: still read"]);
  expect(over.fields).toHaveLength(MAX_HEADER_FIELDS + 1);
  expect(over.fields.at(-1)?.name).toBe("subject");
  expect(over.notes).toHaveLength(1);
  expect(over.notes[0]).toStartWith(`more than ${MAX_HEADER_FIELDS} header fields`);
});

test("a field of exactly MAX_HEADER_FIELD_BYTES is whole; one byte more is cut to it and noted", () => {
  const line = (bytes: number) => `X-Long: ${"a".repeat(bytes - "X-Long: ".length)}`;
  const whole = block([line(MAX_HEADER_FIELD_BYTES)]);
  expect(whole.notes).toEqual([]);
  expect(whole.fields[0]?.value.length).toBe(MAX_HEADER_FIELD_BYTES - "X-Long:".length);
  const cut = block([line(MAX_HEADER_FIELD_BYTES + 1)]);
  expect(cut.notes).toEqual([`header field longer than ${MAX_HEADER_FIELD_BYTES} bytes, truncated`]);
  expect(cut.fields[0]?.value.length).toBe(MAX_HEADER_FIELD_BYTES - "X-Long:".length);
});
