/**
 * Raw 8-bit file names in part headers (name=, filename= as Shift_JIS, CP949, GBK, Big5 bytes, the
 * way old mailers in those locales write them) are read in the message's charset, as its raw
 * top-level header is (parse/part-header-charset.ts): an `attachment contains 見積` rule matches
 * them, and the webhook's `filename` is what Thunderbird and Outlook in that locale show.
 * postal-mime's UTF-8 reading (U+FFFD) stays among the names: the charset is a guess.
 */
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildWebhookPayload } from "../../src/act/webhook-payload.ts";
import { extractFacts, extractFactsFromFile } from "../../src/parse/extract.ts";
import type { Envelope } from "../../src/types.ts";
import { CJK_CASES, encodeIn, forwarded, rawHeaderMessage, rawJisMessage, rawNameMessage } from "../helpers/cjk-mail.ts";

const ENVELOPE: Envelope = { mailFrom: "sender@example.org", rcptTo: ["orders@company.com"], clientIp: "192.0.2.1", helo: "mx.example.org", tls: false };
const payloadOf = (raw: Uint8Array) => buildWebhookPayload({ id: "x", receivedAt: 0, rule: null, category: "c", envelope: ENVELOPE, raw }, 0);

test("a raw legacy-charset file name is read in the charset the message's text part declares, postal-mime's reading kept beside it", async () => {
  for (const c of CJK_CASES) {
    const raw = rawNameMessage(c);
    const facts = await extractFacts(raw, ENVELOPE);
    expect({ file: c.file, first: facts.attachments[0] }).toEqual({ file: c.file, first: c.file });
    // The U+FFFD reading (what postal-mime-based receivers and Gmail show) is still a fact.
    expect(facts.attachments.some((name) => name.includes("\ufffd") && name.endsWith(".exe"))).toBe(true);
    const payload = await payloadOf(raw);
    expect(payload.attachments.map((a) => a.filename)).toEqual([c.file]);
    expect(payload.attachments[0]!.names[0]).toBe(c.file);
    // The payload stays valid JSON with the names in it.
    expect(JSON.parse(JSON.stringify(payload)).attachments[0].filename).toBe(c.file);
  }
});

test("the same from a spool file (a parse worker's job) and with the charset declared at the top", async () => {
  const dir = mkdtempSync(join(tmpdir(), "cjk-s10-names-"));
  try {
    const c = CJK_CASES[0]!;
    const path = join(dir, "m.eml");
    writeFileSync(path, rawNameMessage(c));
    expect((await extractFactsFromFile(path, ENVELOPE)).attachments[0]).toBe(c.file);
    // A single-part message: the top Content-Type declares EUC-KR and names the file itself.
    const top = Buffer.concat([Buffer.from('Subject: x\r\nContent-Type: application/octet-stream; charset=euc-kr; name="'), encodeIn("cp949", "견적서.zip"), Buffer.from('"\r\n\r\nAAAA\r\n')]);
    expect((await extractFacts(top, ENVELOPE)).attachments[0]).toBe("견적서.zip");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a forwarded message's raw file names are read in its own charset, not the forwarder's", async () => {
  for (const c of CJK_CASES) {
    const raw = forwarded(rawNameMessage(c, "x@example.jp"));
    expect((await extractFacts(raw, ENVELOPE)).attachments).toContain(c.file);
    const payload = await payloadOf(raw);
    expect(payload.attachments.map((a) => a.filename)).toContain(c.file);
  }
});

test("UTF-8 names and RFC 2231 / RFC 2047 names are read as before (one name, no second reading)", async () => {
  const utf8 = Buffer.from('Subject: x\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain; charset=shift_jis\r\n\r\nx\r\n--B\r\nContent-Type: application/pdf; name="見積書.pdf"\r\n\r\nAAAA\r\n--B--\r\n');
  expect((await extractFacts(utf8, ENVELOPE)).attachments).toEqual(["見積書.pdf"]);
  const rfc2231 = Buffer.from("Subject: x\r\nContent-Type: application/pdf; name*=shift_jis''%8C%A9%90%CF%8F%91.pdf\r\n\r\nAAAA\r\n");
  expect((await extractFacts(rfc2231, ENVELOPE)).attachments).toEqual(["見積書.pdf"]);
});

test("raw ISO-2022-JP (7-bit escapes, no RFC 2047) in From, Subject and a file name is read as ISO-2022-JP: the From address is no longer lost", async () => {
  const raw = rawJisMessage();
  const facts = await extractFacts(raw, ENVELOPE);
  // Read as ASCII, the display name's `:` made a group of it: no From address, `from` rules blind.
  expect({ from: facts.from, fromName: facts.fromName, subject: facts.subject }).toEqual({ from: "yamada@example.jp", fromName: "山田太郎", subject: "見積書の件" });
  expect(facts.attachments[0]).toBe("見積書.exe");
  const payload = await payloadOf(raw);
  expect({ from: payload.from, subject: payload.subject, filename: payload.attachments[0]?.filename }).toEqual({ from: { name: "山田太郎", address: "yamada@example.jp" }, subject: "見積書の件", filename: "見積書.exe" });
  // Escapes that are not valid ISO-2022-JP (a space inside JIS mode) are left as they are.
  const broken = Buffer.from("Subject: \x1b$Bwire transfer\r\n\r\nx\r\n", "latin1");
  expect((await extractFacts(broken, ENVELOPE)).subject).toBe("\x1b$Bwire transfer");
});

test("the webhook's text of a forwarded message shows its raw legacy-charset or ISO-2022-JP Subject and From decoded, as its top level is", async () => {
  const names: Record<string, string> = { cp932: "山田太郎", cp949: "김철수", gbk: "王小明", big5: "陳大文" };
  for (const c of CJK_CASES) {
    const subject = `${c.word} ${c.file}`;
    const { text } = await payloadOf(forwarded(rawHeaderMessage(c, subject, names[c.codec]!)));
    // Read as UTF-8 (postal-mime), both were U+FFFD.
    expect({ codec: c.codec, fffd: text?.includes("\ufffd") }).toEqual({ codec: c.codec, fffd: false });
    expect(text).toContain(`Subject: ${subject}\n`);
    expect(text).toContain(`${names[c.codec]} <sender@example.org>`);
  }
  // Read as ASCII, the JIS display name's ':' made the From a group with no address.
  const { text } = await payloadOf(forwarded(rawJisMessage("x@example.jp")));
  expect(text).toContain("山田太郎 <yamada@example.jp>");
  expect(text).toContain("Subject: 見積書の件\n");
});
