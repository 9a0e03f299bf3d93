/**
 * Mail as old East-Asian mailers write it (Outlook Express and ERP systems in Korea, Japanese
 * and Chinese webmail): file names and display names as raw legacy-charset bytes in part
 * headers, not RFC 2047 or RFC 2231 encoded. Encoded by Python's codecs (cp932, cp949, gbk,
 * big5), so the bytes are the ones those mailers send.
 */
const ascii = (text: string) => Buffer.from(text, "latin1");

/** Bytes of `text` in `codec` (a Python codec name), through python3. */
export function encodeIn(codec: string, text: string): Buffer {
  const run = Bun.spawnSync(["python3", "-c", `import sys; sys.stdout.buffer.write(sys.argv[1].encode(sys.argv[2]))`, text, codec]);
  if (run.exitCode !== 0) throw new Error(`python3 could not encode in ${codec}: ${run.stderr.toString()}`);
  return Buffer.from(run.stdout);
}

export interface CjkCase {
  codec: string;
  /** The charset the message's text part declares (none at the top: multipart). */
  label: string;
  file: string;
  word: string;
}

export const CJK_CASES: CjkCase[] = [
  { codec: "cp932", label: "shift_jis", file: "見積書.exe", word: "見積" },
  { codec: "cp949", label: "ks_c_5601-1987", file: "견적서.exe", word: "견적" },
  { codec: "gbk", label: "gb2312", file: "报价单.exe", word: "报价" },
  { codec: "big5", label: "big5", file: "報價單.exe", word: "報價" },
];

/** A multipart message whose attachment's name= and filename= are raw bytes in `c.codec`; its text part declares `c.label`. */
export function rawNameMessage(c: CjkCase, to = "orders@company.com"): Buffer {
  const name = encodeIn(c.codec, c.file);
  return Buffer.concat([
    ascii(`From: sender@example.org\r\nTo: ${to}\r\nSubject: quote\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="BB"\r\n\r\n`),
    ascii(`--BB\r\nContent-Type: text/plain; charset=${c.label}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n`), encodeIn(c.codec, c.word), ascii("\r\n"),
    ascii('--BB\r\nContent-Type: application/octet-stream;\r\n\tname="'), name, ascii('"\r\nContent-Disposition: attachment; filename="'), name,
    ascii('"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--BB--\r\n'),
  ]);
}

/** `inner` forwarded inline (message/rfc822) by a mailer whose own parts are UTF-8 / US-ASCII. */
export function forwarded(inner: Buffer, to = "orders@company.com"): Buffer {
  return Buffer.concat([
    ascii(`From: fwd@example.org\r\nTo: ${to}\r\nSubject: Fwd\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="OUT"\r\n\r\n`),
    ascii("--OUT\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee below\r\n--OUT\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"),
    inner, ascii("\r\n--OUT--\r\n"),
  ]);
}

/**
 * A message as Japanese mailers write it in ISO-2022-JP without RFC 2047: raw JIS escapes in the
 * From display name, the Subject and the attachment's name (7-bit, so valid ASCII).
 */
export function rawJisMessage(to = "orders@company.com"): Buffer {
  const jis = (text: string) => encodeIn("iso2022_jp", text);
  return Buffer.concat([
    ascii("From: "), jis("山田太郎"), ascii(` <yamada@example.jp>\r\nTo: ${to}\r\nSubject: `), jis("見積書の件"),
    ascii('\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="BB"\r\n\r\n--BB\r\nContent-Type: text/plain; charset=iso-2022-jp\r\n\r\n'), jis("見積書を添付します"),
    ascii('\r\n--BB\r\nContent-Type: application/octet-stream; name="'), jis("見積書.exe"), ascii('"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--BB--\r\n'),
  ]);
}

/** A text message whose From display name and Subject are raw bytes in `c.codec` (no RFC 2047), its text part declaring `c.label`. */
export function rawHeaderMessage(c: CjkCase, subject: string, name: string): Buffer {
  return Buffer.concat([
    ascii("From: "), encodeIn(c.codec, name), ascii(" <sender@example.org>\r\nTo: x@example.org\r\nSubject: "), encodeIn(c.codec, subject),
    ascii(`\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=${c.label}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n`), encodeIn(c.codec, c.word), ascii("\r\n"),
  ]);
}
