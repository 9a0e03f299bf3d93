/**
 * Raw 8-bit text whose charset the message names only elsewhere is read in that charset, as mail
 * clients show it: a raw GBK subject of a multipart message (no charset at the top) in the first
 * text part's charset, for the rules and the webhook alike; an HTML part without a charset
 * parameter in the one its `<meta>` tag names. Read as windows-1252 and UTF-8, no subject or
 * body rule matched them (common in Chinese and Japanese spam).
 */
import { expect, test } from "bun:test";
import { buildWebhookPayload } from "../../src/act/webhook-payload.ts";
import { htmlMetaCharset } from "../../src/parse/charset.ts";
import { extractFacts } from "../../src/parse/extract.ts";
import type { Envelope } from "../../src/types.ts";

const ENVELOPE: Envelope = { mailFrom: "a@b.example", rcptTo: ["v@company.com"], clientIp: "192.0.2.1", helo: "mx.b.example", tls: false };
const GBK = Buffer.from([0xb7, 0xa2, 0xc6, 0xb1, 0xb4, 0xfa, 0xbf, 0xaa]); // 发票代开
const SJIS = Buffer.from([0x8c, 0xa9, 0x90, 0xcf, 0x8f, 0x91]); // 見積書

const ascii = (text: string) => Buffer.from(text, "latin1");

function multipartWithRawSubject(partCharsetLines: string): Uint8Array {
  return Buffer.concat([
    ascii("From: a@b.example\r\nTo: v@company.com\r\nSubject: "), GBK,
    ascii(`\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative;\r\n boundary="b1"\r\n\r\nPreamble\r\n--b1\r\n${partCharsetLines}\r\nContent-Transfer-Encoding: base64\r\n\r\n${GBK.toString("base64")}\r\n--b1--\r\n`),
  ]);
}

test("a raw subject of a multipart message is read in its first text part's charset (folded parameter too), in the facts and the webhook", async () => {
  for (const part of ['Content-Type: text/plain; charset="gb2312"', "Content-Type: text/plain;\r\n\tcharset=GBK", "content-type: TEXT/html;\r\n format=flowed;\r\n charset=EUC-CN"]) {
    const raw = multipartWithRawSubject(part);
    expect({ part, subject: (await extractFacts(raw, ENVELOPE)).subject }).toEqual({ part, subject: "发票代开" });
    const payload = await buildWebhookPayload({ id: "x", receivedAt: 0, rule: null, category: "c", envelope: ENVELOPE, raw }, 0);
    expect(payload.subject).toBe("发票代开");
  }
  // A charset declared at the top still decides; with none anywhere, windows-1252 as before.
  const top = Buffer.concat([ascii("Subject: "), Buffer.from([0xb0, 0xdf, 0xc0, 0xfb]), ascii("\r\nContent-Type: text/plain; charset=euc-kr\r\n\r\nx\r\n")]);
  expect((await extractFacts(top, ENVELOPE)).subject).toBe("견적");
  const none = Buffer.concat([ascii("Subject: caf"), Buffer.from([0xe9]), ascii("\r\n\r\nx\r\n")]);
  expect((await extractFacts(none, ENVELOPE)).subject).toBe("café");
});

test("an HTML part without a charset parameter is read in the charset its <meta> names, when it is not UTF-8", async () => {
  for (const meta of ['<meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS">', "<META charset='sjis'>", '<meta charset="x-sjis" />']) {
    const raw = Buffer.concat([ascii(`Subject: hi\r\nContent-Type: text/html\r\n\r\n<html><head>${meta}</head><body>`), SJIS, ascii("</body></html>\r\n")]);
    expect({ meta, body: (await extractFacts(raw, ENVELOPE)).body.trim() }).toEqual({ meta, body: "見積書" });
  }
  // Valid UTF-8 stays UTF-8 whatever the tag says; a UTF-16 label or none changes nothing.
  expect(htmlMetaCharset(Buffer.from('<meta charset="shift_jis">見積書'))).toBeNull();
  expect(htmlMetaCharset(Buffer.concat([ascii('<meta charset="utf-16">'), SJIS]))).toBeNull();
  expect(htmlMetaCharset(Buffer.concat([ascii("<p>"), SJIS]))).toBeNull();
  // As a browser's prescan: a tag in a comment or inside another tag's attribute is none, nor is content= without http-equiv.
  for (const decoy of ['<!-- <meta charset="gbk"> -->', '<img alt="<meta charset=gbk>">', '<meta name="x" content="text/html; charset=gbk">']) {
    const html = Buffer.concat([ascii(`<html><head>${decoy}</head><body>the `), Buffer.from([0xb0]), ascii("wire transfer</body></html>")]);
    expect({ decoy, charset: htmlMetaCharset(html) }).toEqual({ decoy, charset: null });
  }
  expect(htmlMetaCharset(Buffer.concat([ascii('<!-- x --><meta charset="gbk">'), Buffer.from([0xb0])]))).toBe("gbk");
  // A quote opens a value only after '=': here the <meta> is inside another tag's value, as a browser reads it.
  expect(htmlMetaCharset(Buffer.concat([ascii('<a x=y"z x="> <meta charset=gbk> ">'), Buffer.from([0xb0])]))).toBeNull();
  expect(htmlMetaCharset(Buffer.concat([ascii('<a title=it\'s><meta charset=gbk>'), Buffer.from([0xb0])]))).toBe("gbk");
  expect(htmlMetaCharset(Buffer.concat([ascii('<meta/charset=gbk>'), Buffer.from([0xb0])]))).toBe("gbk");
  // A '<' before no letter is no tag (a quote after it opens nothing), '<!x' ends at the first '>', '<!-->' is a whole comment: the browser reads the meta after them.
  for (const before of ['<p>1 <" 2</p>', "<!DOCTYPE html \">", "<!-->", "<!--->"]) {
    expect({ before, charset: htmlMetaCharset(Buffer.concat([ascii(`${before}<meta charset="gbk">`), Buffer.from([0xb0, 0xa1])])) }).toEqual({ before, charset: "gbk" });
  }
  // Past the 1,024 bytes a browser's prescan reads, a tag is not looked for.
  expect(htmlMetaCharset(Buffer.concat([ascii(`${" ".repeat(1100)}<meta charset="sjis">`), SJIS]))).toBeNull();
});

test("raw header bytes are never read as UTF-16, whatever a text part or the top says: the ASCII words stay", async () => {
  // One 8-bit byte in the subject, and a first text part (or the top) in UTF-16: read as UTF-16,
  // the subject was 䤠癮楯散…, and `subject contains invoice` missed what Python and postal-mime show.
  const subject = Buffer.concat([ascii("Subject: Invoice f"), Buffer.from([0xfc]), ascii("r you\r\n")]);
  const part = ascii("MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-16\r\nContent-Transfer-Encoding: base64\r\n\r\n//5oAGkA\r\n--b1--\r\n");
  const top = ascii("Content-Type: text/plain; charset=UTF-16BE\r\n\r\nx\r\n");
  for (const raw of [Buffer.concat([subject, part]), Buffer.concat([subject, top])]) {
    expect((await extractFacts(raw, ENVELOPE)).subject).toBe("Invoice für you");
    const payload = await buildWebhookPayload({ id: "x", receivedAt: 0, rule: null, category: "c", envelope: ENVELOPE, raw }, 0);
    expect(payload.subject).toBe("Invoice für you");
  }
});

test("the meta prescan's whitespace is ASCII only: a <meta> a browser does not see (0xA0, 0x0B) names no charset", () => {
  const bytes = (s: string) => Buffer.from(s, "latin1");
  for (const meta of ["<meta\xa0charset=gbk>", "<meta\x0bcharset=gbk>", "<meta x\xa0charset=gbk>", "<meta charset=\xa0gbk>", "<meta charset\xa0=gbk>"]) {
    expect({ meta, label: htmlMetaCharset(bytes(`${meta}<p>\x81wire</p>`)) }).toEqual({ meta, label: null });
  }
  expect(htmlMetaCharset(bytes("<meta\tcharset = gbk><p>\x81wire</p>"))).toBe("gbk");
});
