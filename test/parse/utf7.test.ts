/** UTF-7 (RFC 2152) decoding: the RFC's examples, the edge cases of its syntax, and bytes that are not UTF-7. */
import { expect, test } from "bun:test";
import { decoderFor, isUtf7 } from "../../src/parse/charset.ts";
import { decodeEncodedWords } from "../../src/parse/encoded-words.ts";
import { decodeUtf7 } from "../../src/parse/utf7.ts";

const utf7 = (text: string) => decodeUtf7(new TextEncoder().encode(text));

test("RFC 2152's examples, and what filters are evaded with", () => {
  expect(utf7("A+ImIDkQ.")).toBe("A\u2262\u0391.");
  expect(utf7("Hi Mom -+Jjo--!")).toBe("Hi Mom -\u263a-!");
  expect(utf7("+ZeVnLIqe-")).toBe("日本語");
  expect(utf7("+AEkAbgB2AG8AaQBjAGU-")).toBe("Invoice");
  expect(utf7("evil+AC4-exe")).toBe("evil.exe");
  expect(utf7("+2D3eAA-")).toBe("😀"); // a surrogate pair
});

test("'+-' is a plus, a run may end without '-', and malformed runs never throw", () => {
  expect(utf7("1 +- 1 = 2")).toBe("1 + 1 = 2");
  expect(utf7("+AGEAYgBj end")).toBe("abc end");
  expect(utf7("+")).toBe("");
  expect(utf7("a+!b")).toBe("a!b");
  expect(utf7("+A-")).toBe(""); // 6 bits: no whole code unit
  expect(decodeUtf7(new Uint8Array([0x61, 0xe9, 0x2b, 0xff]))).toBe("aé\u00ff");
});

test("a lone surrogate becomes U+FFFD, as TextDecoder makes it for UTF-16; a pair split over two runs is kept", () => {
  expect(utf7("a+2AA-b")).toBe("a\ufffdb"); // a high half alone
  expect(utf7("a+3AA-b")).toBe("a\ufffdb"); // a low half alone
  expect(utf7("+3ADYAA-")).toBe("\ufffd\ufffd"); // low then high: no pair
  expect(utf7("+2D0-")).toBe("\ufffd"); // at the very end
  expect(utf7("+2D3-+3gA-")).toBe("😀");
  expect(utf7("+2D3-x+3gA-")).toBe("\ufffdx\ufffd");
  expect(utf7("+2D3YAA-")).toBe("\ufffd\ufffd"); // high then high
});

test("the UTF-7 labels get the UTF-7 decoder, in encoded words too", () => {
  for (const label of ["utf-7", "UTF-7", "unicode-1-1-utf-7", "x-utf-7", "utf-7*en"]) expect({ label, utf7: isUtf7(label) }).toEqual({ label, utf7: true });
  expect(isUtf7("utf-8")).toBe(false);
  expect(decoderFor("unicode-1-1-utf-7").decode(new TextEncoder().encode("+AEk-"))).toBe("I");
  expect(decodeEncodedWords("=?utf-7?Q?+AEkAbgB2AG8AaQBjAGU-?= due")).toBe("Invoice due");
  expect(decodeEncodedWords("=?UTF-7?B?ZXZpbCtBQzQtZXhl?=")).toBe("evil.exe");
});

test("24 MB of '+!' (an empty shifted run per two bytes) decodes in well under a second of CPU", () => {
  // A run's array, a Buffer per stretch of direct text and a string append per '+' took ~4 s here.
  const bytes = new TextEncoder().encode("+!".repeat(12 * 1024 * 1024));
  const before = process.cpuUsage();
  const text = decodeUtf7(bytes);
  const used = process.cpuUsage(before);
  expect(text.length).toBe(12 * 1024 * 1024);
  expect((used.user + used.system) / 1000).toBeLessThan(1000);
});
