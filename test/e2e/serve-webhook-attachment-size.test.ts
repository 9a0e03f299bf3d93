/**
 * The `size` of each attachment in a webhook post is its decoded size as a MIME reader gives it
 * (RFC 2045/2046), the one Python's email package gives (`get_payload(decode=True)`), for parts
 * that are not base64: 7bit, 8bit, binary and quoted-printable. postal-mime writes each line of
 * such a part followed by one "\n", so the post listed a one-line file `abc` as 4 bytes (the
 * boundary's line break counted as content) and a 3-line file of 19 bytes as 18 (each CRLF as
 * one byte); a big one, whose lines the payload leaves out of its parse (act/webhook-cut.ts),
 * too. Through the real `mailgw serve` (from source) over SMTP; Python decodes the same bytes.
 * Ports: picked in 50000-50999 (loopback).
 */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { freePortsIn } from "../helpers/interop.ts";
import { PYTHON } from "../helpers/python-receiver.ts";
import { serveWithWebhook } from "../helpers/serve-webhook-suite.ts";
import { sendMessage } from "../helpers/webhook-messages.ts";

const suite = serveWithWebhook(
  () => freePortsIn(3, 50000, 50999),
  (url) => `domains: [company.com]
default: { action: archive, category: default }
rules:
  - { name: hook, priority: 10, action: webhook, url: "${url}", conditions: [{ field: rcpt, operator: equals, value: hook@company.com }] }
`,
);

const crlf = (lines: string[]) => Buffer.from(`${lines.join("\r\n")}\r\n`, "latin1");
const HEAD = ["From: a@sender.example", "To: hook@company.com", "MIME-Version: 1.0"];

/** A message with a text part and one file per [encoding, content lines]. */
function withFiles(subject: string, files: [string, string[]][]): Buffer {
  const parts = files.flatMap(([encoding, lines], i) => [
    "--b", `Content-Type: application/octet-stream; name="f${i}.bin"`, `Content-Transfer-Encoding: ${encoding}`, `Content-Disposition: attachment; filename="f${i}.bin"`, "", ...lines,
  ]);
  return crlf([...HEAD, `Subject: ${subject}`, 'Content-Type: multipart/mixed; boundary="b"', "", "--b", "Content-Type: text/plain", "", "see the files", ...parts, "--b--"]);
}

/** The decoded size of each part that names a file, in order, as Python's email package reads the message. */
function pythonSizes(message: Buffer): number[] {
  const script = [
    "import email, json, sys",
    "from email import policy",
    "m = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.default)",
    "print(json.dumps([len(p.get_payload(decode=True)) for p in m.walk() if not p.is_multipart() and p.get_filename()]))",
  ].join("\n");
  if (PYTHON === null) throw new Error("python3 not found");
  const run = spawnSync(PYTHON, ["-c", script], { input: message });
  if (run.status !== 0) throw new Error(`python3 failed: ${run.stderr}`);
  return JSON.parse(run.stdout.toString()) as number[];
}

async function postedSizes(name: string, message: Buffer): Promise<number[]> {
  const id = await sendMessage(suite.serve().smtpPort, "hook@company.com", { name, mailFrom: "a@sender.example", bytes: message, expected: {} });
  const { post } = await suite.postOf(id, `the post of ${name}`);
  return post.attachments.map((a) => a.size);
}

test("7bit, 8bit, binary and quoted-printable files: sized as decoded, line breaks as CRLF, not the one before the boundary", async () => {
  const message = withFiles("small files", [
    ["7bit", ["abc"]],
    ["7bit", ["line1", "line2", "line3"]],
    ["8bit", ["\xe9t\xe9"]],
    ["binary", ["abc"]],
    ["quoted-printable", ["hello=", "world"]],
    ["quoted-printable", ["a=3Db", "c=0D=0A", "end="]],
    ["7bit", [""]],
    ["base64", ["YWJj"]],
  ]);
  const expected = [3, 19, 3, 3, 10, 13, 0, 3];
  expect(pythonSizes(message)).toEqual(expected);
  expect(await postedSizes("small-files", message)).toEqual(expected);
}, 60_000);

test("a message that is one 7bit file: its last line break is the file's (no boundary follows)", async () => {
  const message = crlf([...HEAD, "Subject: one file", 'Content-Type: application/octet-stream; name="top.bin"', "Content-Transfer-Encoding: 7bit", "", "abc", "def"]);
  expect(pythonSizes(message)).toEqual([10]);
  expect(await postedSizes("one-file", message)).toEqual([10]);
}, 60_000);

test("a forwarded message's 7bit file, a text part that names a file: sized as decoded too", async () => {
  const inner = ["From: b@sender.example", "Subject: inner", "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="i"', "", "--i", "Content-Type: text/plain", "", "inner",
    "--i", 'Content-Type: application/octet-stream; name="inner.bin"', "", "x", "y", "z", "--i--"];
  const message = crlf([...HEAD, "Subject: forward", 'Content-Type: multipart/mixed; boundary="b"', "", "--b", "Content-Type: text/plain", "", "see below",
    "--b", 'Content-Type: text/plain; name="notes.txt"', "", "first", "--b", "Content-Type: message/rfc822", "", ...inner, "--b--"]);
  expect(pythonSizes(message)).toEqual([5, 7]);
  expect((await postedSizes("forward", message)).sort()).toEqual([5, 7]);
}, 60_000);

test("a big 7bit file whose lines the payload leaves out of its parse: sized as decoded, each line's CRLF counted", async () => {
  const lines = Array.from({ length: 2000 }, (_, i) => `${"QUJD".repeat(18)}${String(i).padStart(4, "0")}`);
  const message = withFiles("big file", [["7bit", [...lines, "last line"]], ["quoted-printable", [...lines, "soft="]]]);
  const expected = pythonSizes(message);
  expect(expected).toEqual([2000 * 78 + 9, 2000 * 78 + 4]);
  expect(await postedSizes("big-file", message)).toEqual(expected);
}, 60_000);
