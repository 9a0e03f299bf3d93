/**
 * breakLongLines (src/act/long-lines.ts): what the relay gets for lines over 998 octets, at the
 * edges the e2e suite (test/e2e/serve-relay-long-lines.test.ts) does not reach, and its cost.
 */
import { expect, test } from "bun:test";
import { breakLongLines, LINE_LIMIT } from "../../src/act/long-lines.ts";

const out = (s: string): string => breakLongLines(Buffer.from(s, "utf8")).toString("utf8");
const lengths = (s: string): number[] => out(s).split("\r\n").map((l) => Buffer.byteLength(l));

test("a message with no line over 998 octets is returned itself, not copied", () => {
  for (const s of ["", "a\r\n", `${"x".repeat(LINE_LIMIT)}\r\n${"y".repeat(LINE_LIMIT)}`, "\r\n".repeat(5000)]) {
    const raw = Buffer.from(s);
    expect(breakLongLines(raw)).toBe(raw);
  }
});

test.each([
  ["999 octets, no blank", `${"c".repeat(999)}\r\n`, `${"c".repeat(998)}\r\n c\r\n`],
  ["an unterminated last line", `ok\r\n${"c".repeat(999)}`, `ok\r\n${"c".repeat(998)}\r\n c`],
  ["998 + 997 octets: two full lines", "c".repeat(1995), `${"c".repeat(998)}\r\n ${"c".repeat(997)}`],
  ["a blank at octet 998 starts the next line", `${"c".repeat(998)} dd\r\n`, `${"c".repeat(998)}\r\n dd\r\n`],
  ["a tab counts as a blank", `${"c".repeat(500)}\t${"d".repeat(600)}\r\n`, `${"c".repeat(500)}\r\n\t${"d".repeat(600)}\r\n`],
])("%s", (_name, input, expected) => {
  expect(out(input)).toBe(expected);
});

test("a cut never splits a UTF-8 character", () => {
  const line = `a${"ü".repeat(700)}\r\n`; // the 998th octet is the first half of a ü
  const result = out(line);
  expect(result).not.toContain("\ufffd");
  expect(result.replaceAll("\r\n ", "")).toBe(line);
  expect(lengths(line)).toEqual([997, 1 + 404, 0]);
});

test("every line of the result is within 998 octets, and removing the breaks gives the input back", () => {
  const text = Array.from({ length: 50 }, (_, i) => `${"w ".repeat(i * 37)}w${"x".repeat(i * 91)}`).join("\r\n");
  const result = out(text);
  expect(Math.max(...result.split("\r\n").map((l) => l.length))).toBeLessThanOrEqual(LINE_LIMIT);
  // Folds before a blank add CRLF only; cuts add CRLF SPACE (and the input has no blank before an x).
  expect(result.replace(/\r\n (?=x)/g, "").replace(/\r\n(?=[ \t])/g, "")).toBe(text);
});

test("20 MB in one line, with or without blanks, is linear (well under a second)", () => {
  for (const raw of [Buffer.alloc(20 * 1024 * 1024, 0x61), Buffer.from("word ".repeat(4 * 1024 * 1024))]) {
    const t0 = performance.now();
    const result = breakLongLines(raw);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(result.length).toBeGreaterThan(raw.length);
  }
});
