/**
 * Through the real `mailgw serve` (from source) over SMTP: messages whose attachment names are
 * raw Shift_JIS, CP949, GBK and Big5 bytes (old East-Asian mailers) match `attachment contains`
 * rules in those scripts, and the webhook post names the file as a mail client in that locale
 * shows it (parse/part-header-charset.ts). Before, the names were U+FFFD, no rule matched and
 * the messages fell to the default (archive).
 * Ports: picked in 48000-48499 (loopback).
 */
import { expect, test } from "bun:test";
import { CJK_CASES, forwarded, rawJisMessage, rawNameMessage } from "../helpers/cjk-mail.ts";
import { pickPorts } from "../helpers/real-proxies.ts";
import { sendMessage } from "../helpers/webhook-messages.ts";
import { serveWithWebhook } from "../helpers/serve-webhook-suite.ts";

const suite = serveWithWebhook(
  () => pickPorts(3, 48000, 500),
  (url) => {
    const rules = CJK_CASES.map((c, i) => `  - { name: quote-${i}, priority: ${10 + i}, category: quote-${i}, action: webhook, url: "${url}", conditions: [{ field: attachment, operator: contains, value: ${c.word} }] }`);
    return `domains: [company.com]\ndefault: { action: archive, category: default }\nrules:\n${rules.join("\n")}\n`;
  },
);

test("raw legacy-charset attachment names match `attachment contains` rules and are posted decoded, forwarded inline too", async () => {
  for (const [i, c] of CJK_CASES.entries()) {
    for (const bytes of [rawNameMessage(c), forwarded(rawNameMessage(c, "x@example.jp"))]) {
      const id = await sendMessage(suite.serve().smtpPort, "orders@company.com", { name: c.codec, mailFrom: "sender@example.org", bytes, expected: {} });
      const { text, post } = await suite.postOf(id, `the post of the ${c.codec} message`);
      expect({ codec: c.codec, category: post.category, rule: post.rule }).toEqual({ codec: c.codec, category: `quote-${i}`, rule: `quote-${i}` });
      expect(post.attachments.map((a) => a.filename)).toContain(c.file);
      // The body the receiver got is JSON with the name in it as UTF-8.
      expect(text).toContain(c.file);
    }
  }
}, 120_000);

test("a raw ISO-2022-JP message: its attachment matches `attachment contains 見積`, the post has the From, Subject and file name decoded", async () => {
  const id = await sendMessage(suite.serve().smtpPort, "orders@company.com", { name: "jis", mailFrom: "yamada@example.jp", bytes: rawJisMessage(), expected: {} });
  const { post } = await suite.postOf(id, "the post of the ISO-2022-JP message");
  expect({ rule: post.rule, from: post.from, subject: post.subject, files: post.attachments.map((a) => a.filename) }).toEqual({
    rule: "quote-0", from: { name: "山田太郎", address: "yamada@example.jp" }, subject: "見積書の件", files: ["見積書.exe"],
  });
}, 60_000);
