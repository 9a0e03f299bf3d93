/**
 * Messages for the webhook interop tests, each with what a receiver should find in the post,
 * and an SMTP sender for them (SMTPUTF8 when the envelope sender needs it).
 */
import { expect } from "bun:test";
import { RawClient, greet } from "../smtp/helpers.ts";

export interface TestMessage {
  name: string;
  mailFrom: string;
  bytes: Buffer;
  /** Fields of the receiver's record (python-receiver.ts ReceivedPost) this message must produce. */
  expected: Record<string, unknown>;
}

const crlf = (lines: string[]) => Buffer.from(`${lines.join("\r\n")}\r\n`, "utf8");

/** 3000 bytes that are not text: the attachment's decoded size is checked. */
const PDF = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 37) % 256));
const PDF_LINES = PDF.toString("base64").match(/.{1,76}/g) ?? [];
const encodedWord = (text: string) => `=?UTF-8?B?${Buffer.from(text, "utf8").toString("base64")}?=`;

export const MESSAGES: TestMessage[] = [
  {
    name: "plain",
    mailFrom: "alice@sender.example",
    bytes: crlf(["From: Alice <alice@sender.example>", "To: orders@company.com", "Subject: order 42", "Message-ID: <plain-42@sender.example>", "Date: Mon, 23 Nov 2026 10:00:00 +0000", "", "Two crates, please.", "..a line that starts with a dot"]),
    expected: {
      subject: "order 42",
      messageId: "<plain-42@sender.example>",
      from: { name: "Alice", address: "alice@sender.example" },
      to: [{ name: "", address: "orders@company.com" }],
      text: "Two crates, please.\n..a line that starts with a dot\n",
      html: null,
      attachments: [],
    },
  },
  {
    name: "utf8",
    mailFrom: "김철수@sender.example",
    bytes: crlf([
      "From: 김철수 <김철수@sender.example>", "To: 주문 <orders@company.com>", "Subject: 견적 요청 – 3월 주문", "Message-ID: <utf8-1@sender.example>",
      "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit", "", "안녕하세요, 견적 부탁드립니다.",
    ]),
    expected: {
      subject: "견적 요청 – 3월 주문",
      from: { name: "김철수", address: "김철수@sender.example" },
      to: [{ name: "주문", address: "orders@company.com" }],
      text: "안녕하세요, 견적 부탁드립니다.\n",
      attachments: [],
    },
  },
  {
    name: "multipart",
    mailFrom: "reports@sender.example",
    bytes: crlf([
      "From: Reports <reports@sender.example>", "To: orders@company.com", `Subject: ${encodedWord("월간 보고서")}`, "MIME-Version: 1.0",
      'Content-Type: multipart/mixed; boundary="outer"', "", "--outer", 'Content-Type: multipart/alternative; boundary="alt"', "",
      "--alt", "Content-Type: text/plain; charset=utf-8", "", "See the attached report.", "--alt", "Content-Type: text/html; charset=utf-8", "",
      "<p>See the <b>attached</b> report.</p>", "--alt--", "--outer", 'Content-Type: application/pdf; name="report.pdf"',
      "Content-Disposition: attachment; filename*=UTF-8''%EB%B3%B4%EA%B3%A0%EC%84%9C.pdf", "Content-Transfer-Encoding: base64", "",
      ...PDF_LINES, "--outer--",
    ]),
    expected: {
      subject: "월간 보고서",
      text: "See the attached report.\n",
      html: "<p>See the <b>attached</b> report.</p>\n",
      // Two names (RFC 2231 filename*=, plain name=): postal-mime's pick first, then the other.
      attachments: [{ filename: "보고서.pdf", contentType: "application/pdf", size: PDF.length, disposition: "attachment", contentId: null, names: ["보고서.pdf", "report.pdf"] }],
      headerNames: ["Received", "From", "To", "Subject", "MIME-Version", "Content-Type"],
    },
  },
];

/** A text/plain message of about `bytes` bytes. */
export function bigMessage(bytes: number): TestMessage {
  const line = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123";
  const body = Array.from({ length: Math.ceil(bytes / (line.length + 2)) }, () => line);
  return { name: "big", mailFrom: "a@sender.example", bytes: crlf(["From: a@sender.example", "To: big@company.com", "Subject: big", "", ...body]), expected: {} };
}

/** A small message whose subject tells the cases apart in the receiver's record. */
export function note(subject: string): TestMessage {
  return { name: subject, mailFrom: "a@sender.example", bytes: crlf(["From: a@sender.example", "To: hooks@company.com", `Subject: ${subject}`, "", "body"]), expected: { subject } };
}

/** Sends `m` to `rcpt` over one SMTP session (dot-stuffed); returns mailgw's queue id. */
export async function sendMessage(port: number, rcpt: string, m: TestMessage): Promise<string> {
  const c = await RawClient.connect(port);
  try {
    await greet(c, "client.test");
    const utf8 = /[^\x00-\x7f]/.test(m.mailFrom) ? " SMTPUTF8" : "";
    expect(await c.cmd(`MAIL FROM:<${m.mailFrom}>${utf8}`)).toStartWith("250");
    expect(await c.cmd(`RCPT TO:<${rcpt}>`)).toStartWith("250");
    expect(await c.cmd("DATA")).toStartWith("354");
    c.write(Buffer.concat([Buffer.from(m.bytes.toString("latin1").replace(/^\./gm, ".."), "latin1"), Buffer.from(".\r\n")]));
    const reply = await c.reply(15_000);
    const id = /^250 2\.0\.0 Queued as (\S+)/.exec(reply)?.[1];
    if (!id) throw new Error(`mailgw answered ${reply}`);
    return id;
  } finally {
    c.end();
  }
}
