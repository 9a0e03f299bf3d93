/**
 * Charset labels that Chinese, Korean, Japanese and Russian mailers write but the WHATWG list
 * (TextDecoder) lacks decode as the charset they name, as Python's email package decodes them,
 * in a subject (RFC 2047) and in a body part, not as windows-1252 mojibake that no rule matches.
 * The labels it had keep working.
 */
import { expect, test } from "bun:test";
import { decoderFor } from "../../src/parse/charset.ts";
import { decodeEncodedWords } from "../../src/parse/encoded-words.ts";
import { extractFacts } from "../../src/parse/extract.ts";

const GB = [0xb7, 0xa2, 0xc6, 0xb1]; // 发票 in GB2312
const KR = [0xb0, 0xdf, 0xc0, 0xfb]; // 견적 in EUC-KR
const JP = [0xb8, 0xab, 0xc0, 0xd1]; // 見積 in EUC-JP
const SJ = [0x8c, 0xa9, 0x90, 0xcf]; // 見積 in Shift_JIS
const B5 = [0xb3, 0xf8, 0xbb, 0xf9]; // 報價 in Big5
const RU = [0xd3, 0xde, 0xc5, 0xd4]; // счет in KOI8-R
const W1251 = [0xd1, 0xf7, 0xe5, 0xf2]; // Счет in windows-1251

test.each([
  ["EUC-CN", GB, "发票"], ["x-euc-cn", GB, "发票"], ["GB2312-80", GB, "发票"], ["gb2312", GB, "发票"],
  ["euc_kr", KR, "견적"], ["EUCKR", KR, "견적"], ["ks_c_5601-1987", KR, "견적"], ["ks_c_5601", KR, "견적"], ["KSC5601", KR, "견적"],
  ["eucjp", JP, "見積"], ["ujis", JP, "見積"], ["euc_jp", JP, "見積"],
  ["shiftjis", SJ, "見積"], ["Shift_JIS", SJ, "見積"], ["x-sjis", SJ, "見積"],
  ["big-5", B5, "報價"], ["big5", B5, "報價"],
  ["koi8r", RU, "счет"], ["KOI8-R", RU, "счет"],
  ["win-1251", W1251, "Счет"], ["cp-1251", W1251, "Счет"], ["cp1251", W1251, "Счет"],
  ["UTF_8", [0xe8, 0xa6, 0x8b], "見"],
] as [string, number[], string][])("%s", (label, bytes, text) => {
  expect(decoderFor(label).decode(new Uint8Array(bytes))).toBe(text);
});

test("an unknown label is still read as windows-1252", () => {
  expect(decoderFor("x-made-up_label").decode(new Uint8Array([0xe9]))).toBe("é");
});

test("a subject in =?EUC-CN?B?…?= is the subject a rule sees", async () => {
  const word = `=?EUC-CN?B?${Buffer.from(GB).toString("base64")}?=`;
  expect(decodeEncodedWords(`代开${word}`)).toBe("代开发票");
  const raw = Buffer.from(`From: a@example.cn\r\nTo: b@company.com\r\nSubject: ${word}\r\n\r\nx\r\n`);
  const facts = await extractFacts(raw, { mailFrom: "a@example.cn", rcptTo: ["b@company.com"], clientIp: "127.0.0.1", helo: "h", tls: false });
  expect(facts.subject).toBe("发票");
});

/** Characters in GB2312, windows-1251 and KOI8-R (TextEncoder writes UTF-8 only). */
const TABLES: Record<string, Record<string, number[]>> = {
  gb2312: { 请: [0xc7, 0xeb], 查: [0xb2, 0xe9], 收: [0xca, 0xd5], 发: [0xb7, 0xa2], 票: [0xc6, 0xb1] },
  "windows-1251": { С: [0xd1], ч: [0xf7], ё: [0xb8], т: [0xf2], " ": [0x20], н: [0xed], а: [0xe0], о: [0xee], п: [0xef], л: [0xeb], у: [0xf3] },
  "koi8-r": { С: [0xf3], ч: [0xde], ё: [0xa3], т: [0xd4] },
};

test.each([
  ["EUC-CN", "gb2312", "请查收发票"],
  ["GB2312-80", "gb2312", "请查收发票"],
  ["win-1251", "windows-1251", "Счёт на оплату"],
  ["koi8r", "koi8-r", "Счёт"],
])("a body part in charset=%s is the body a rule sees", async (label, charset, text) => {
  const encoded = Buffer.from([...text].flatMap((c) => TABLES[charset]?.[c] ?? [0x3f]));
  const raw = Buffer.from(`From: a@example.cn\r\nTo: b@company.com\r\nSubject: x\r\nContent-Type: text/plain; charset=${label}\r\nContent-Transfer-Encoding: base64\r\n\r\n${encoded.toString("base64")}\r\n`);
  const facts = await extractFacts(raw, { mailFrom: "a@example.cn", rcptTo: ["b@company.com"], clientIp: "127.0.0.1", helo: "h", tls: false });
  expect(facts.body.trim()).toBe(text);
});

// UTF-16 only by its own labels: postal-mime and Thunderbird know no `UTF_16` or `x-utf-16` and
// show the part's ASCII words as they are; read as UTF-16 they were 汐慥敳 to every rule.
test.each(["UTF_16", "x-utf-16", "x-utf-16le", "utf_16be"])("charset=%s is not UTF-16 to the rules", async (label) => {
  const raw = Buffer.from(`From: a@example.com\r\nTo: b@company.com\r\nSubject: =?${label}?Q?Invoice_overdue?=\r\nContent-Type: text/plain; charset=${label}\r\n\r\nPlease do the wire transfer today.\r\n`);
  const facts = await extractFacts(raw, { mailFrom: "a@example.com", rcptTo: ["b@company.com"], clientIp: "127.0.0.1", helo: "h", tls: false });
  expect(facts.subject).toBe("Invoice overdue");
  expect(facts.body.trim()).toBe("Please do the wire transfer today.");
});

test("a label TextDecoder takes as UTF-16 is still UTF-16", () => {
  expect(decoderFor("utf-16").decode(new Uint8Array([0x68, 0, 0x69, 0]))).toBe("hi");
  expect(decoderFor("UTF-16BE").decode(new Uint8Array([0, 0x68, 0, 0x69]))).toBe("hi");
});

// EUC-CN is GB2312 proper, KS X 1001 EUC-KR proper: GBK's and UHC's wider trail bytes took the ASCII letter after a stray
// lead byte, hiding "wire transfer" from a body rule while Python, postal-mime and Thunderbird show it.
test.each([["EUC-CN", GB, "发票"], ["x-euc-cn", GB, "发票"], ["GB2312-80", GB, "发票"], ["KSX1001", KR, "견적"], ["ks_x_1001", KR, "견적"]] as [string, number[], string][])("charset=%s does not take an ASCII letter into a character", async (label, bytes, text) => {
  expect(decoderFor(label).decode(new Uint8Array([0xb0, 0x77, ...bytes, 0x80, 0x41]))).toBe(`\ufffdw${text}\ufffdA`);
  const body = Buffer.concat([Buffer.from("Please do the "), Buffer.from([0xb0]), Buffer.from("wire transfer, "), Buffer.from(bytes), Buffer.from("\r\n")]);
  const raw = Buffer.concat([Buffer.from(`From: a@example.cn\r\nTo: b@company.com\r\nSubject: =?${label}?Q?=B0wire?=\r\nContent-Type: text/plain; charset=${label}\r\n\r\n`), body]);
  const facts = await extractFacts(raw, { mailFrom: "a@example.cn", rcptTo: ["b@company.com"], clientIp: "127.0.0.1", helo: "h", tls: false });
  expect(facts.subject).toBe("\ufffdwire");
  expect(facts.body.trim()).toBe(`Please do the \ufffdwire transfer, ${text}`);
});
