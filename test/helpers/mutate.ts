/**
 * Seeded mutations of raw messages for the mutation fuzz test (test/parse/mutation-fuzz.test.ts):
 * the ways real senders and attackers break MIME (flipped bytes, truncation, repeated or missing
 * header lines, broken boundaries, odd charset labels, broken base64 and quoted-printable, deep
 * nesting, huge encoded-word headers, strange folding, bare CR/LF, NUL and 8-bit header bytes,
 * RFC 2231 continuations, message/rfc822 chains, header blocks near the 1 MB limits). Pure
 * functions of the PRNG and the input: a failing case replays from its seed.
 */
export type Rand = () => number;

const enc = (s: string) => Buffer.from(s, "latin1");
const int = (r: Rand, n: number) => Math.floor(r() * n);
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[int(r, xs.length)]!;

function headerEnd(b: Buffer): number {
  const a = b.indexOf("\r\n\r\n");
  const c = b.indexOf("\n\n");
  if (a < 0) return c < 0 ? b.length : c + 2;
  if (c < 0) return a + 4;
  return Math.min(a + 4, c + 2);
}

function lines(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let s = 0;
  for (let i = b.indexOf(10); i >= 0; i = b.indexOf(10, s)) {
    out.push(b.subarray(s, i + 1));
    s = i + 1;
  }
  if (s < b.length) out.push(b.subarray(s));
  return out;
}

const CHARSETS = ["utf-8", "utf-7", "x-unknown-charset", "iso-2022-jp", "utf-16", "utf-16le", "ks_c_5601-1987", "gb18030", "koi8-r", "x-mac-roman", "\"utf-8", "utf-32", "", "windows-1255", "big5", "shift_jis", "euc-kr", "unicode-1-1-utf-7", "csISO2022JP", "8859-1", "replacement", "x-user-defined", "iso-8859-8-i", "hz-gb-2312"];

export const MUTATORS: Record<string, (r: Rand, b: Buffer) => Buffer> = {
  flip(r, b) {
    const out = Buffer.from(b);
    const n = 1 + int(r, 20);
    for (let i = 0; i < n && out.length; i++) out[int(r, out.length)] = int(r, 256);
    return out;
  },
  truncate(r, b) {
    return b.subarray(0, int(r, b.length + 1));
  },
  dupHeader(r, b) {
    const he = headerEnd(b);
    const ls = lines(b.subarray(0, he));
    if (ls.length < 2) return b;
    const i = int(r, ls.length - 1);
    const copies = ls[i]!.length > 10_000 ? 1 : pick(r, [1, 1, 2, 50, 1200]);
    return Buffer.concat([...ls.slice(0, i + 1), ...Array(copies).fill(ls[i]), ...ls.slice(i + 1), b.subarray(he)]);
  },
  removeHeader(r, b) {
    const he = headerEnd(b);
    const ls = lines(b.subarray(0, he));
    if (ls.length < 2) return b;
    const i = int(r, ls.length - 1);
    return Buffer.concat([...ls.slice(0, i), ...ls.slice(i + 1), b.subarray(he)]);
  },
  mangleBoundary(r, b) {
    const s = b.toString("latin1");
    const m = /boundary\s*=\s*"?([^";\r\n]+)"?/i.exec(s);
    if (!m) return b;
    const bd = m[1]!;
    const mode = int(r, 6);
    if (mode === 0) return enc(s.replace(m[0], "")); // missing boundary parameter
    if (mode === 1) return enc(s.split(`--${bd}--`).join("")); // no closing delimiter
    if (mode === 2) return enc(s.replace(m[0], `boundary="${bd.slice(0, Math.max(1, bd.length - 1))}"`)); // prefix boundary
    if (mode === 3) return enc(s.replaceAll(`--${bd}`, `--${bd} `)); // trailing space
    if (mode === 4) return enc(s.replace(m[0], 'boundary=""'));
    return enc(s.replace(`--${bd}`, `--${bd.toUpperCase()}`));
  },
  charset(r, b) {
    const s = b.toString("latin1");
    let seen = false;
    const out = s.replace(/charset\s*=\s*"?[^";\s]*"?/gi, () => {
      seen = true;
      return r() < 0.5 ? `charset="${pick(r, CHARSETS)}"` : `charset=${pick(r, CHARSETS)}`;
    });
    if (seen) return enc(out);
    return Buffer.concat([enc(`Content-Type: text/plain; charset=${pick(r, CHARSETS)}\r\n`), b]);
  },
  breakBase64(r, b) {
    const s = b.toString("latin1");
    // garbage inside runs of base64 lines
    return enc(s.replace(/^([A-Za-z0-9+/]{60,})$/gm, (line) => (r() < 0.3 ? pick(r, [line.slice(0, int(r, line.length)), `${line}=`, `=${line}`, line.replace(/./, "*"), `${line}\x00`, `${line.slice(0, 5)}==${line.slice(5)}`]) : line)));
  },
  breakQP(r, b) {
    const s = b.toString("latin1");
    if (!/quoted-printable/i.test(s)) return enc(s.replace(/Content-Transfer-Encoding:\s*\S+/i, "Content-Transfer-Encoding: quoted-printable") + "=\r\n=Z=4=\r\n=");
    return enc(s.replace(/=([0-9A-F]{2})/g, (m) => (r() < 0.2 ? pick(r, ["=", "=G1", "=\r", "=\n", "==", "=0"]) : m)));
  },
  deepNest(r, b) {
    const depth = pick(r, [5, 21, 60, 300, 3000]);
    const he = headerEnd(b);
    const head = b.subarray(0, he).toString("latin1").replace(/\r?\n\r?\n$/, "\r\n");
    let body = "";
    for (let i = 0; i < depth; i++) body += `--b${i}\r\nContent-Type: multipart/mixed; boundary="b${i + 1}"\r\n\r\n`;
    body += `--b${depth}\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="deep.exe"\r\n\r\nTVo=\r\n`;
    for (let i = depth; i >= 0; i--) body += `--b${i}--\r\n`;
    const headNoCt = head.replace(/^Content-Type:.*(\r?\n[ \t].*)*\r?\n/gim, "");
    return Buffer.concat([enc(`${headNoCt}Content-Type: multipart/mixed; boundary="b0"\r\n\r\n`), enc(body), b.subarray(he)]);
  },
  hugeEncodedWords(r, b) {
    const n = pick(r, [100, 3000, 20000]);
    const word = pick(r, ["=?utf-8?B?7JWI64WV?=", "=?utf-8?Q?=ED=95=9C?=", "=?iso-2022-jp?B?GyRCJEgbKEI=?=", "=?utf-8?B?7J?= =?utf-8?B?WI?=", "=?x-bogus?Q?abc?=", "=?utf-8*en?Q?a?=", "=?utf-8?B?====?="]);
    const field = pick(r, ["Subject", "From", "To", "Content-Type", "X-Foo"]);
    const value = field === "Content-Type" ? `application/pdf; name="${Array(n).fill(word).join(" ")}"` : Array(n).fill(word).join(r() < 0.5 ? " " : "\r\n ");
    return Buffer.concat([enc(`${field}: ${value}\r\n`), b]);
  },
  strangeFold(r, b) {
    const he = headerEnd(b);
    const h = Buffer.from(b.subarray(0, he)).toString("latin1");
    const out: string[] = [];
    for (const ch of h) {
      out.push(ch);
      if (ch !== "\n" && r() < 0.03) out.push(pick(r, ["\r\n ", "\r\n\t", "\n ", "\r\n \r\n ", "\r\n", "\r ", "\r\n  \r\n"]));
    }
    return Buffer.concat([enc(out.join("")), b.subarray(he)]);
  },
  lineEndings(r, b) {
    const s = b.toString("latin1");
    return enc(s.replace(/\r?\n/g, () => pick(r, ["\r\n", "\n", "\r", "\r\r\n", "\n\r", "\r\n"])));
  },
  nul8bit(r, b) {
    const he = headerEnd(b);
    const h = Buffer.from(b.subarray(0, he));
    const n = 1 + int(r, 10);
    for (let i = 0; i < n && h.length > 2; i++) {
      const at = int(r, h.length);
      if (h[at] === 10 || h[at] === 13) continue;
      h[at] = pick(r, [0, 0x80, 0xff, 0xc3, 0xa9, 0xe2, 0x1b, 0x7f]);
    }
    return Buffer.concat([h, b.subarray(he)]);
  },
  rfc2231(r, b) {
    const pieces = pick(r, [2, 3, 50, 2000]);
    const names: string[] = [];
    const order = [...Array(pieces).keys()];
    if (r() < 0.3) order.reverse();
    if (r() < 0.2) order.splice(int(r, order.length), 1);
    for (const i of order) {
      const star = r() < 0.7 ? "*" : "";
      const v = i === 0 && star ? `${pick(r, ["utf-8", "x-bad", "iso-8859-1", ""])}'${pick(r, ["en", ""])}'%E2%80%AEfdp.exe%00` : i % 2 ? "%C3%A9" : `part${i}`;
      names.push(`filename*${i}${star}=${star ? v : `"${v}"`}`);
    }
    if (r() < 0.2) names.push(`filename*99999999999999999999*=x`);
    const part = `Content-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n ${names.join(";\r\n ")}\r\n\r\nTVo=\r\n`;
    const he = headerEnd(b);
    const head = b.subarray(0, he).toString("latin1").replace(/\r?\n\r?\n$/, "\r\n").replace(/^Content-Type:.*(\r?\n[ \t].*)*\r?\n/gim, "");
    return enc(`${head}Content-Type: multipart/mixed; boundary="x2231"\r\n\r\n--x2231\r\nContent-Type: text/plain\r\n\r\n${b.subarray(he, he + 2000).toString("latin1")}\r\n--x2231\r\n${part}--x2231--\r\n`);
  },
  rfc822Chain(r, b) {
    const depth = pick(r, [2, 5, 25, 100]);
    let msg = b;
    for (let i = 0; i < depth; i++) {
      msg = Buffer.concat([enc(`From: f${i}@x.example\r\nSubject: fwd ${i}\r\nContent-Type: multipart/mixed; boundary="r${i}"\r\n\r\n--r${i}\r\nContent-Type: message/rfc822\r\n${r() < 0.3 ? "Content-Transfer-Encoding: base64\r\n" : ""}\r\n`), msg, enc(`\r\n--r${i}--\r\n`)]);
    }
    return msg;
  },
  spaceLine(r, b) {
    // a line of only spaces in the header block (header-readings.ts reads such a block both ways)
    const he = headerEnd(b);
    const ls = lines(b.subarray(0, he));
    const i = int(r, ls.length);
    return Buffer.concat([...ls.slice(0, i), enc(pick(r, [" \r\n", "\t\r\n", "   \n"])), ...ls.slice(i), b.subarray(he)]);
  },
  noBlankLine(r, b) {
    const he = headerEnd(b);
    const h = b.subarray(0, he).toString("latin1").replace(/\r?\n\r?\n$/, "\r\n");
    return Buffer.concat([enc(h), b.subarray(he)]);
  },
  splice(r, b) {
    const a = int(r, b.length);
    const c = int(r, b.length);
    return Buffer.concat([b.subarray(0, Math.max(a, c)), b.subarray(Math.min(a, c))]);
  },
  longLine(r, b) {
    const n = pick(r, [1000, 100_000, 1_000_000]);
    const ch = pick(r, ["a", " ", "=", "-", "\t", "=?", "<", "\""]);
    const he = headerEnd(b);
    const where = r() < 0.5 ? he : int(r, b.length);
    const field = r() < 0.5 ? `X-Long: ${ch.repeat(n / ch.length)}\r\n` : `${ch.repeat(n / ch.length)}\r\n`;
    return Buffer.concat([b.subarray(0, where === he ? 0 : where), enc(field), b.subarray(where === he ? 0 : where)]);
  },
};

MUTATORS.bigHeader = (r, b) => {
  const kb = pick(r, [60, 900, 1000, 1020, 1050, 1100, 1130, 1160, 1200]);
  const pads: Buffer[] = [];
  const width = pick(r, [70, 998, 60_000, 70_000]);
  for (let left = kb * 1024; left > 0; left -= width) pads.push(enc(`X-Pad: ${"a".repeat(Math.min(width, left))}\r\n`));
  const he = headerEnd(b);
  const ls = lines(b.subarray(0, he));
  const at = int(r, ls.length);
  return Buffer.concat([...ls.slice(0, at), ...pads, ...ls.slice(at), b.subarray(he)]);
};
MUTATORS.raw8bitSubject = (r, b) => {
  const bytes = pick(r, [[0x8c, 0xa9, 0x90, 0xcf], [0xb0, 0xdf, 0xc0, 0xfb], [0xc3, 0xa9], [0xe9], [0xff, 0xfe, 0x41, 0x00], [0x1b, 0x24, 0x42, 0x38, 0x2b, 0x1b, 0x28, 0x42], [0xed, 0xa0, 0x80]]);
  return Buffer.concat([enc("Subject: "), Buffer.from(bytes), enc(r() < 0.5 ? "\r\n" : " =?utf-8?B?7JWI?=\r\n"), b]);
};

export const NAMES = Object.keys(MUTATORS);

/** 1-3 mutations; returns the bytes and their names. */
export function mutate(r: Rand, b: Buffer): { bytes: Buffer; applied: string[] } {
  const n = 1 + int(r, 3);
  const applied: string[] = [];
  let out = b;
  for (let i = 0; i < n; i++) {
    const name = pick(r, NAMES);
    applied.push(name);
    out = MUTATORS[name]!(r, out);
  }
  return { bytes: out, applied };
}
