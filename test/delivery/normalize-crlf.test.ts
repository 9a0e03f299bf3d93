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

  // Every message is normalized before its rules see it (extract.ts): a native indexOf per line
  // ending cost ~1.3 s on 20 MB of bare newlines (and 0.35 s only to count a canonical 20 MB of CRLFs).
  test("20 MB in which every byte or pair is a line ending normalizes in well under a second", () => {
    const MB = 1024 * 1024;
    const inputs: [string, Uint8Array, number][] = [
      ["LF", Buffer.alloc(20 * MB, 0x0a), 40 * MB],
      ["CR", Buffer.alloc(20 * MB, 0x0d), 40 * MB],
      ["LF CR (a bare LF, CRLFs, a bare CR)", enc("\n\r".repeat(10 * MB)), 20 * MB + 2],
      ["CRLF (canonical)", enc("\r\n".repeat(10 * MB)), 20 * MB],
    ];
    normalizeLineEndings(enc("warm\nup\r".repeat(1000)));
    for (const [name, input, length] of inputs) {
      const start = performance.now();
      const out = normalizeLineEndings(input);
      const ms = performance.now() - start;
      expect(out.length).toBe(length);
      expect({ name, fast: ms < 400 }).toEqual({ name, fast: true });
    }
  });
});
