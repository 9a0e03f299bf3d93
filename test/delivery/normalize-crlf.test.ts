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

  test("a 25 MB message with bare LFs: every line ending doubled, nothing else changed", () => {
    const input = enc("line of text that is moderately long\n".repeat(700_000));
    const out = normalizeLineEndings(input);
    expect(out.length).toBe(input.length + 700_000);
    expect(countBareLineEndings(out)).toBe(0);
  });

  // Where line endings come closer than 16 bytes a byte loop takes over for 64 KB (the native
  // indexOf per line ending made 20 MB of bare newlines cost 1.3 s; bench/hostile-parse.ts
  // measures it): the runs below cross those windows and switch back and forth.
  test("dense line endings (every byte or pair one) and mixed densities across the byte-loop windows", () => {
    const MB = 1024 * 1024;
    const inputs: [string, Uint8Array, number][] = [
      ["LF", Buffer.alloc(3 * MB, 0x0a), 6 * MB],
      ["CR", Buffer.alloc(3 * MB, 0x0d), 6 * MB],
      ["LF CR (a bare LF, CRLFs, a bare CR)", enc("\n\r".repeat(MB)), 2 * MB + 2],
      ["CRLF (canonical)", enc("\r\n".repeat(MB)), 2 * MB],
    ];
    for (const [name, input, length] of inputs) {
      const out = normalizeLineEndings(input);
      expect({ name, length: out.length, bare: countBareLineEndings(out) }).toEqual({ name, length, bare: 0 });
    }
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    for (let round = 0; round < 12; round++) {
      let s = "";
      let density = 0;
      for (let i = 0; i < 200_000; i++) {
        if (i % 3000 === 0) density = rnd() * 0.7; // stretches of long lines, then of bare CR/LF
        const r = rnd();
        s += r < density / 2 ? "\n" : r < density ? "\r" : "a";
      }
      expect(dec(normalizeLineEndings(enc(s))) === reference(s)).toBe(true);
    }
  });
});
