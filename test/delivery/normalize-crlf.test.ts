/** normalizeLineEndings: table cases, a randomized comparison with a reference, no-copy fast path. */
import { describe, expect, test } from "bun:test";
import { countBareLineEndings, normalizeLineEndings } from "../../src/act/normalize-crlf.ts";

const enc = (s: string) => Buffer.from(s, "latin1");
const dec = (b: Uint8Array) => Buffer.from(b).toString("latin1");

/** Obvious reference: regex over a latin1 string. */
const reference = (s: string) => s.replace(/\r\n|\r|\n/g, "\r\n");

describe("normalizeLineEndings", () => {
  const cases: [string, string][] = [
    ["", ""],
    ["abc", "abc"],
    ["a\r\nb\r\n", "a\r\nb\r\n"],
    ["a\nb", "a\r\nb"],
    ["a\rb", "a\r\nb"],
    ["\n.\n", "\r\n.\r\n"],
    ["\r.\r", "\r\n.\r\n"],
    ["\r\n.\r\r\n", "\r\n.\r\n\r\n"],
    ["\r\r\n.\r\r\n", "\r\n\r\n.\r\n\r\n"],
    ["\n\r", "\r\n\r\n"],
    ["\r", "\r\n"],
    ["\n", "\r\n"],
    ["x\r", "x\r\n"],
    ["\r\n\x00.\r\n", "\r\n\x00.\r\n"],
  ];
  for (const [input, want] of cases) {
    test(JSON.stringify(input), () => {
      expect(dec(normalizeLineEndings(enc(input)))).toBe(want);
      expect(countBareLineEndings(enc(want))).toBe(0);
    });
  }

  test("random byte strings of CR, LF, dot and letters match the reference", () => {
    const alphabet = ["\r", "\n", ".", "a", "\x00"];
    let seed = 12345;
    const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    for (let n = 0; n < 2000; n++) {
      let s = "";
      const len = Math.floor(rnd() * 40);
      for (let i = 0; i < len; i++) s += alphabet[Math.floor(rnd() * alphabet.length)];
      const out = normalizeLineEndings(enc(s));
      expect(dec(out)).toBe(reference(s));
      expect(countBareLineEndings(out)).toBe(0);
    }
  });

  test("an already canonical message is returned as is (no copy)", () => {
    const input = enc("Subject: x\r\n\r\n" + "line of text\r\n".repeat(10000));
    expect(normalizeLineEndings(input)).toBe(input);
  });

  test("a 25 MB message with bare LFs normalizes quickly", () => {
    const input = enc("line of text that is moderately long\n".repeat(700_000));
    const start = performance.now();
    const out = normalizeLineEndings(input);
    const ms = performance.now() - start;
    expect(out.length).toBe(input.length + 700_000);
    expect(ms).toBeLessThan(2000);
  });
});
