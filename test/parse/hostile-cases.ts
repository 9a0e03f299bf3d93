/**
 * Generators for hostile messages (CPU and memory traps for a MIME parser). Shared by the
 * limit tests in test/parse/ and the timing script bench/hostile-parse.ts. Each case is
 * built in memory, ASCII only, and stays under the 25 MB message size limit.
 */

const encoder = new TextEncoder();
const MB = 1024 * 1024;

export interface HostileCase {
  name: string;
  /** What the case attacks, for the bench table. */
  trap: string;
  build: () => Uint8Array;
}

/** Repeats `unit` until the result is at least `bytes` long. */
function fill(unit: string, bytes: number): string {
  return unit.repeat(Math.ceil(bytes / unit.length));
}

function message(headers: string, body: string): Uint8Array {
  return encoder.encode(`${headers}\r\n\r\n${body}`);
}

const BASE_HEADERS = "From: a@example.com\r\nSubject: hostile\r\nMIME-Version: 1.0";

export function nestedMultipart(depth: number): Uint8Array {
  let head = `${BASE_HEADERS}\r\nContent-Type: multipart/mixed; boundary="b0"\r\n\r\n`;
  let tail = "";
  for (let level = 1; level <= depth; level++) {
    head += `--b${level - 1}\r\nContent-Type: multipart/mixed; boundary="b${level}"\r\n\r\n`;
    tail = `--b${level - 1}--\r\n${tail}`;
  }
  return encoder.encode(`${head}--b${depth}\r\nContent-Type: text/plain\r\n\r\ninner\r\n--b${depth}--\r\n${tail}`);
}

export function manyParts(count: number): Uint8Array {
  const part = "--p\r\nContent-Type: text/plain\r\n\r\nx\r\n";
  return message(`${BASE_HEADERS}\r\nContent-Type: multipart/mixed; boundary="p"`, `${part.repeat(count)}--p--\r\n`);
}

export function manyRfc822(count: number): Uint8Array {
  const inner = "From: b@example.com\r\nSubject: inner\r\n\r\nhello\r\n";
  const part = `--p\r\nContent-Type: message/rfc822\r\n\r\n${inner}`;
  return message(`${BASE_HEADERS}\r\nContent-Type: multipart/mixed; boundary="p"`, `${part.repeat(count)}--p--\r\n`);
}

export function nestedRfc822(depth: number, partsPerLevel: number): Uint8Array {
  let inner = "From: z@example.com\r\nSubject: bottom\r\n\r\nbottom\r\n";
  for (let level = 0; level < depth; level++) {
    const b = `l${level}`;
    const filler = `--${b}\r\nContent-Type: text/plain\r\n\r\nx\r\n`.repeat(partsPerLevel);
    inner =
      `From: n${level}@example.com\r\nContent-Type: multipart/mixed; boundary="${b}"\r\n\r\n` +
      `${filler}--${b}\r\nContent-Type: message/rfc822\r\n\r\n${inner}--${b}--\r\n`;
  }
  return encoder.encode(`${BASE_HEADERS}\r\n${inner}`);
}

/** Many open boundaries, then a body of lines that all start with "--" (boundary scan per line). */
function boundaryScan(depth: number, bytes: number): Uint8Array {
  let head = `${BASE_HEADERS}\r\nContent-Type: multipart/mixed; boundary="b0"\r\n\r\n`;
  for (let level = 1; level <= depth; level++) {
    head += `--b${level - 1}\r\nContent-Type: multipart/mixed; boundary="b${level}"\r\n\r\n`;
  }
  head += `--b${depth}\r\nContent-Type: text/plain\r\n\r\n`;
  return encoder.encode(head + fill("--b1x\r\n", bytes));
}

export const HOSTILE_CASES: HostileCase[] = [
  {
    name: "to-encoded-words-2mb",
    trap: "2 MB To: of encoded words (address parser + RFC 2047 decoding)",
    build: () => message(`${BASE_HEADERS}\r\nTo: ${fill("=?utf-8?B?YWJj?= <a@b.c>, ", 1.95 * MB)}`, "x"),
  },
  {
    name: "to-no-at-300k",
    trap: "To: of 300,000 'a' without @ (address parser backtracking)",
    build: () => message(`${BASE_HEADERS}\r\nTo: ${"a".repeat(300_000)}`, "x"),
  },
  {
    name: "to-angle-at-2mb",
    trap: "To: '<' followed by 2 MB of '@' and no '>'",
    build: () => message(`${BASE_HEADERS}\r\nTo: <${"@".repeat(1.95 * MB)}`, "x"),
  },
  {
    name: "to-many-addresses",
    trap: "1.9 MB To: of short addresses (address count)",
    build: () => message(`${BASE_HEADERS}\r\nTo: ${fill("x@y.z, ", 1.9 * MB)}`, "x"),
  },
  {
    name: "from-quotes-2mb",
    trap: "From: of 2 MB of unbalanced quotes and comments",
    build: () => message(`Subject: x\r\nFrom: ${fill('"(a ', 1.95 * MB)}`, "x"),
  },
  {
    name: "subject-encoded-words-2mb",
    trap: "2 MB Subject of encoded words (RFC 2047 decode and join)",
    build: () => message(`${BASE_HEADERS}\r\nX-S: 1\r\nSubject: ${fill("=?utf-8?B?6rKs?=", 1.95 * MB)}`, "x"),
  },
  {
    name: "to-colons-1.9mb",
    trap: "To: of 1.9 MB of ':' (slow path of postal-mime's address parser)",
    build: () => message(`${BASE_HEADERS}\r\nTo: ${":".repeat(1.9 * MB)}`, "x"),
  },
  {
    name: "to-fields-many",
    trap: "900 To: fields of 1 KB addresses each",
    build: () => message(`${BASE_HEADERS}\r\n${`To: ${fill("x@y.z, ", 1024)}\r\n`.repeat(900)}X-End: 1`, "x"),
  },
  {
    name: "filename-encoded-words",
    trap: "attachment file name of 200 KB of joinable encoded words (postal-mime decodes it)",
    build: () =>
      message(
        `${BASE_HEADERS}\r\nContent-Type: multipart/mixed; boundary="p"`,
        `--p\r\nContent-Type: application/pdf; name="${fill("=?utf-8?B?6rKs?=", 200 * 1024)}"\r\n\r\nx\r\n--p--\r\n`,
      ),
  },
  {
    name: "filename-spaces-200k",
    trap: "attachment file name of 200,000 spaces (folded lines) before x.exe (trailing-space trim by regex retried at each one)",
    build: () =>
      message(
        `${BASE_HEADERS}\r\nContent-Type: multipart/mixed; boundary="p"`,
        `--p\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="a${`\r\n${" ".repeat(900)}`.repeat(222)}x.exe"\r\n\r\nx\r\n--p--\r\n`,
      ),
  },
  {
    name: "header-spaces-15x63k",
    trap: "15 header fields of 63,000 spaces (folded lines) before one letter (value trim by regex retried at each space)",
    build: () => message(`${BASE_HEADERS}\r\n${Array.from({ length: 15 }, (_, i) => `X-Pad-${i}: a${`\r\n${" ".repeat(900)}`.repeat(70)}b\r\n`).join("")}X-End: 1`, "x"),
  },
  {
    name: "header-line-20mb",
    trap: "one 20 MB header line",
    build: () => message(`${BASE_HEADERS}\r\nX-Long: ${fill("abcdefgh", 20 * MB)}`, "x"),
  },
  {
    name: "header-folds-200k",
    trap: "one header folded over 200,000 lines",
    build: () => message(`${BASE_HEADERS}\r\nX-Folded: a${"\r\n b".repeat(200_000)}`, "x"),
  },
  {
    name: "many-headers-100k",
    trap: "100,000 short header fields",
    build: () => message(`${BASE_HEADERS}\r\n${"X-H: v\r\n".repeat(100_000)}X-End: 1`, "x"),
  },
  {
    name: "deep-multipart-250",
    trap: "multipart nested 250 levels",
    build: () => nestedMultipart(250),
  },
  {
    name: "deep-multipart-5000",
    trap: "multipart nested 5,000 levels",
    build: () => nestedMultipart(5000),
  },
  {
    name: "many-parts-400k",
    trap: "400,000 sibling MIME parts",
    build: () => manyParts(400_000),
  },
  {
    name: "many-rfc822-50k",
    trap: "50,000 inline message/rfc822 parts (one sub-parser each)",
    build: () => manyRfc822(50_000),
  },
  {
    name: "nested-rfc822-10x2000",
    trap: "message/rfc822 nested 10 deep, 2,000 parts per level",
    build: () => nestedRfc822(10, 2000),
  },
  {
    name: "boundary-scan-200x20mb",
    trap: "200 open boundaries and 20 MB of lines starting with '--'",
    build: () => boundaryScan(200, 20 * MB),
  },
  {
    name: "boundary-scan-19x20mb",
    trap: "19 open boundaries (within the depth limit) and 20 MB of lines starting with '--'",
    build: () => boundaryScan(19, 20 * MB),
  },
  {
    name: "rfc822-nested-20mb",
    trap: "20 MB base64 attachment inside message/rfc822 inside message/rfc822 (parsed once per level)",
    build: () => {
      let inner =
        `Content-Type: application/octet-stream; name="big.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n` +
        fill("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2\r\n", 20 * MB);
      for (let level = 0; level < 3; level++) inner = `Content-Type: message/rfc822\r\n\r\n${inner}`;
      return encoder.encode(`${BASE_HEADERS}\r\n${inner}`);
    },
  },
  {
    name: "mixed-html-hostile-20mb",
    trap: "text part plus a 20 MB HTML part of unclosed markup (postal-mime converts it to text)",
    build: () =>
      message(
        `${BASE_HEADERS}\r\nContent-Type: multipart/mixed; boundary="p"`,
        `--p\r\nContent-Type: text/plain\r\n\r\nhi\r\n--p\r\nContent-Type: text/html\r\n\r\n` +
          `${fill("<a <!-- <script <li <br ", 20 * MB)}\r\n--p--\r\n`,
      ),
  },
  {
    name: "html-unclosed-tags-20mb",
    trap: "20 MB HTML-only body of unclosed '<a ' and '<!--'",
    build: () => message(`${BASE_HEADERS}\r\nContent-Type: text/html`, fill("<a <!-- <script ", 20 * MB)),
  },
  {
    name: "rfc822-chain-20-deep-20mb",
    trap: "message/rfc822 nested 20 deep around 20 MB of short text lines (each level parsed in turn)",
    build: () => {
      let inner = `Content-Type: text/plain\r\n\r\n${fill("ab\r\n", 20 * MB)}`;
      for (let level = 0; level < 20; level++) inner = `Subject: level ${level}\r\nContent-Type: message/rfc822\r\n\r\n${inner}`;
      return encoder.encode(`${BASE_HEADERS}\r\n${inner}`);
    },
  },
  {
    name: "rfc822-chain-20-deep-non-field-20mb",
    trap: "message/rfc822 nested 20 deep around 20 MB of short text lines, each level's header with a line that starts no field (each read both ways)",
    build: () => {
      let inner = `Content-Type: text/plain\r\n\r\n${fill("ab\r\n", 20 * MB)}`;
      for (let level = 0; level < 20; level++) {
        const junk = "Please send the wire transfer today\r\n";
        inner = level % 2 === 0 ? `Subject: level ${level}\r\nContent-Type: message/rfc822\r\n${junk}\r\n${inner}` : `Subject: level ${level}\r\n${junk}Content-Type: message/rfc822\r\n\r\n${inner}`;
      }
      return encoder.encode(`${BASE_HEADERS}\r\n${inner}`);
    },
  },
  {
    name: "rfc822-chain-20-deep-500-parts",
    trap: "message/rfc822 nested 20 deep, 500 attachment parts at each level",
    build: () => nestedRfc822(20, 500),
  },
  {
    name: "newlines-in-rfc822-20mb",
    trap: "20 MB of bare newlines inside a message/rfc822 part (postal-mime's cost per line)",
    build: () => message(`${BASE_HEADERS}\r\nContent-Type: message/rfc822`, `Subject: in\r\n\r\n${"\n".repeat(20 * MB)}`),
  },
  {
    name: "newline-text-parts-20mb",
    trap: "9,000 text parts of 2,400 bare newlines each (per-part caps do not bound the total)",
    build: () =>
      message(`${BASE_HEADERS}\r\nContent-Type: multipart/mixed; boundary="p"`, `${`--p\r\nContent-Type: text/plain\r\n\r\n${"\n".repeat(2400)}`.repeat(9000)}--p--\r\n`),
  },
  {
    name: "html-tags-no-amp-20mb",
    trap: "20 MB HTML-only body of short tags and text, no '&' (search for the next entity)",
    build: () => message(`${BASE_HEADERS}\r\nContent-Type: text/html`, fill("<b>x", 20 * MB)),
  },
  {
    name: "html-amp-no-semicolon-20mb",
    trap: "20 MB HTML-only body of '&' with no ';' after it (search for the entity's end)",
    build: () => message(`${BASE_HEADERS}\r\nContent-Type: text/html`, fill("a & b ", 20 * MB)),
  },
  {
    name: "html-entities-20mb",
    trap: "20 MB HTML-only body of entities and tags",
    build: () => message(`${BASE_HEADERS}\r\nContent-Type: text/html`, fill("<p>&amp;&#x41;&unknown;&#99999999;</p>\n", 20 * MB)),
  },
  {
    name: "html-invisible-entities-20mb",
    trap: "20 MB HTML-only body of HTML 5's long names that show as nothing or one space (no output stops the reading)",
    build: () =>
      message(`${BASE_HEADERS}\r\nContent-Type: text/html`, fill("&NegativeVeryThinSpace;&InvisibleTimes;&Tab;&shy", 20 * MB)),
  },
  {
    name: "html-shy-no-semicolon-20mb",
    trap: "20 MB HTML-only body of `&shy` (a legacy name without ';' that shows as nothing: no output stops the reading)",
    build: () => message(`${BASE_HEADERS}\r\nContent-Type: text/html`, fill("&shy", 20 * MB)),
  },
  {
    name: "body-one-line-24mb",
    trap: "24 MB body without a line break",
    build: () => message(BASE_HEADERS, fill("abcdefgh", 24 * MB)),
  },
  {
    name: "base64-attachment-18mb",
    trap: "18 MB base64 attachment (throughput baseline)",
    build: () =>
      message(
        `${BASE_HEADERS}\r\nContent-Type: multipart/mixed; boundary="p"`,
        `--p\r\nContent-Type: text/plain\r\n\r\nhi\r\n--p\r\nContent-Type: application/octet-stream; name="a.bin"\r\n` +
          `Content-Transfer-Encoding: base64\r\n\r\n${fill("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2\r\n", 18 * MB)}--p--\r\n`,
      ),
  },
  {
    name: "base64-pads-rfc822-17mb",
    trap: "17 MB base64 message/rfc822 part of \"QQ=\" units (postal-mime: one buffer per '=')",
    build: () =>
      message(
        `${BASE_HEADERS}\r\nContent-Type: multipart/mixed; boundary="p"`,
        `--p\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n${fill("QQ=QQ=QQ=QQ=QQ=QQ=QQ=QQ=\r\n", 17 * MB)}--p--\r\n`,
      ),
  },
  {
    name: "base64-fake-spans-18mb",
    trap: "18 MB base64 text part of fake \"--f\" / multipart part headers with \"QQ=\" content",
    build: () =>
      message(
        `${BASE_HEADERS}\r\nContent-Type: multipart/mixed; boundary="p"`,
        `--p\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n` +
          `${fill(`--f\r\nContent-Type: multipart/mixed; boundary=g\r\n\r\n${"QQ=".repeat(700)}\r\n`, 18 * MB)}--p--\r\n`,
      ),
  },
  {
    name: "base64-fake-qp-spans-18mb",
    trap: "18 MB base64 text part of fake \"--f\" / quoted-printable part headers with \"QQ=\" content ('=' not counted in quoted-printable)",
    build: () =>
      message(
        `${BASE_HEADERS}\r\nContent-Type: multipart/mixed; boundary="p"`,
        `--p\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n` +
          `${fill(`--f\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n${"QQ=".repeat(700)}\r\n`, 18 * MB)}--p--\r\n`,
      ),
  },
  {
    name: "rfc822-headers-past-budget-20mb",
    trap: "a text part of 1,000,001 bare newlines (line budget used up), then 1,200 message/rfc822 parts of 16 KB header blocks of short lines (kept past the budget)",
    build: () =>
      message(
        `${BASE_HEADERS}\r\nContent-Type: multipart/mixed; boundary="p"`,
        `--p\r\nContent-Type: text/plain\r\n\r\n${"\n".repeat(1_000_001)}` +
          `${`--p\r\nContent-Type: message/rfc822\r\n\r\n${"a:\n".repeat(5400)}\r\nx\r\n`.repeat(1200)}--p--\r\n`,
      ),
  },
  {
    name: "utf7-plus-bang-6x4mb",
    trap: "UTF-7 text parts of '+!' (an empty shifted run per 2 bytes), each just under the 4 MB text cut",
    build: () => {
      const part = `--p\r\nContent-Type: text/plain; charset=utf-7\r\n\r\n${fill(`${"+!".repeat(499)}\r\n`, 4 * MB - 4096)}`;
      return message(`${BASE_HEADERS}\r\nContent-Type: multipart/mixed; boundary="p"`, `${part.repeat(6)}--p--\r\n`);
    },
  },
  {
    name: "two-readings-320x78kb",
    trap: "a line of spaces before text in the header block (read both ways: two MIME parses), then 320 base64 attachments of 78 KB",
    build: () => {
      const part = (i: number) => `--p\r\nContent-Type: application/octet-stream; name=f${i}.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n${fill(`${"QUFB".repeat(19)}\r\n`, 78 * 1024)}`;
      const parts = Array.from({ length: 320 }, (_, i) => part(i)).join("");
      return encoder.encode(`${BASE_HEADERS}\r\nContent-Type: multipart/mixed; boundary="p"\r\n \r\nX\r\n\r\n${parts}--p--\r\n`);
    },
  },
  {
    name: "content-type-params-1mb",
    trap: "Content-Type with 1 MB of parameters and RFC 2231 sections",
    build: () =>
      message(`${BASE_HEADERS}\r\nContent-Type: text/plain; ${fill("name*7*=%41%42; x=(c) ", 1024 * 1024)}`, "x"),
  },
];

/**
 * The same case with a line of spaces and a junk line after its first header field: a header
 * block read both ways (src/parse/header-readings.ts), so parsed twice unless the two readings
 * are the same MIME structure. For the bench; the heaviest cases only.
 */
function withSpaceLine(hostile: HostileCase): HostileCase {
  return {
    name: `${hostile.name}+space-line`,
    trap: `${hostile.trap}, its header block read both ways`,
    build: () => {
      const raw = Buffer.from(hostile.build());
      const firstLineEnd = raw.indexOf("\r\n") + 2;
      return Buffer.concat([raw.subarray(0, firstLineEnd), Buffer.from(" \r\nX\r\n"), raw.subarray(firstLineEnd)]);
    },
  };
}

const SPACE_LINE_VARIANTS = ["newline-text-parts-20mb", "rfc822-headers-past-budget-20mb", "rfc822-chain-20-deep-20mb", "base64-attachment-18mb", "mixed-html-hostile-20mb"];
HOSTILE_CASES.push(...HOSTILE_CASES.filter((hostile) => SPACE_LINE_VARIANTS.includes(hostile.name)).map(withSpaceLine));
