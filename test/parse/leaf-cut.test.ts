/**
 * Big leaf parts are cut before postal-mime (src/parse/leaf-cut.ts) without changing facts:
 * a 25 MB message with a big text part, a big attachment and, behind them, a message/rfc822
 * part with its own attachment gives the full body text (up to MAX_BODY_TEXT_CHARS), every
 * attachment name and type, in well under a second; every "--" line survives the cut.
 */
import { expect, test } from "bun:test";
import { extractFacts } from "../../src/parse/extract.ts";
import { cutLeafContents, OTHER_PART_BYTES, TEXT_PART_BYTES } from "../../src/parse/leaf-cut.ts";
import { MAX_BASE64_PAD_UNITS, MAX_BODY_TEXT_CHARS, MAX_PARSE_LINES } from "../../src/parse/limits.ts";
import type { Envelope } from "../../src/types.ts";
import { cpuMsSince } from "../helpers/cpu-time.ts";

const ENVELOPE: Envelope = { mailFrom: "a@example.org", rcptTo: ["b@company.com"], clientIp: "192.0.2.1", helo: "h", tls: false };
const LINE = "The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuv\r\n";
const B64_LINE = `${"QUJDRA==".padEnd(76, "A")}\r\n`;

function bigMessage(): Uint8Array {
  const text = LINE.repeat(Math.ceil((10 * 1024 * 1024) / LINE.length));
  const pdf = B64_LINE.repeat(Math.ceil((10 * 1024 * 1024) / B64_LINE.length));
  const nested = [
    "From: inner@example.org", "Subject: inner", 'Content-Type: multipart/mixed; boundary="in"', "", "--in",
    "Content-Type: text/plain", "", "inner text marker-inner", "--in",
    'Content-Type: application/zip; name="inner.zip"', "Content-Disposition: attachment; filename=\"inner.zip\"",
    "Content-Transfer-Encoding: base64", "", B64_LINE.repeat(30_000), "--in--", "",
  ].join("\r\n");
  return new TextEncoder().encode([
    "From: a@example.org", "To: b@company.com", "Subject: big", 'Content-Type: multipart/mixed; boundary="out"', "",
    "--out", "Content-Type: text/plain; charset=us-ascii", "", `marker-start ${text}marker-end`,
    "--out", 'Content-Type: application/pdf; name="big.pdf"', 'Content-Disposition: attachment; filename="big.pdf"',
    "Content-Transfer-Encoding: base64", "", pdf,
    "--out", "Content-Type: message/rfc822", 'Content-Disposition: attachment; filename="fwd.eml"', "", nested,
    "--out--", "",
  ].join("\r\n"));
}

test("a 25 MB multipart message keeps its facts through the cut, fast", async () => {
  const raw = bigMessage();
  expect(raw.byteLength).toBeGreaterThan(20 * 1024 * 1024);
  const before = process.cpuUsage();
  const facts = await extractFacts(raw, ENVELOPE);
  const ms = cpuMsSince(before);
  expect(facts.body.startsWith("marker-start The quick brown fox")).toBe(true);
  expect(facts.body.length).toBe(MAX_BODY_TEXT_CHARS);
  expect(facts.attachments).toEqual(["big.pdf", "fwd.eml", "inner.zip"]);
  expect(facts.attachmentTypes).toEqual(["application/pdf", "message/rfc822", "application/zip"]);
  expect(ms).toBeLessThan(1000);
}, 20_000);

test("the cut keeps every line starting with -- and caps leaf contents", () => {
  const raw = bigMessage();
  const bodyStart = Buffer.from(raw).indexOf("\r\n\r\n") + 4;
  const slices = cutLeafContents(raw, bodyStart, raw.byteLength, "multipart/mixed");
  const kept = Buffer.concat(slices);
  const dashLines = (b: Uint8Array) => Buffer.from(b).toString("latin1").split("\n").filter((l) => l.startsWith("--"));
  expect(dashLines(kept)).toEqual(dashLines(raw.subarray(bodyStart)));
  expect(kept.byteLength).toBeLessThan(TEXT_PART_BYTES + OTHER_PART_BYTES + 3 * 1024 * 1024);
  const small = new TextEncoder().encode("Subject: x\r\n\r\nshort body\r\n-- \r\nsig\r\n");
  expect(cutLeafContents(small, 14, small.byteLength, null)).toEqual([small.subarray(14)]);
});

test("content lines are capped across parts, containers included; structure kept", () => {
  const raw = new TextEncoder().encode("X: y\n\n--b\nContent-Type: text/plain\n\n1\n2\n3\n--b\nContent-Type: message/rfc822\n\n4\n5\n--b--\n");
  const lines = { left: 4, cut: false, padsLeft: Infinity, padsCut: false };
  const kept = Buffer.concat(cutLeafContents(raw, 6, raw.byteLength, "multipart/mixed", lines)).toString("latin1");
  expect(kept).toBe("--b\nContent-Type: text/plain\n\n1\n2\n3\n--b\nContent-Type: message/rfc822\n\n4\n--b--\n");
  expect(lines).toEqual({ left: 0, cut: true, padsLeft: Infinity, padsCut: false });
});

// postal-mime spends ~0.5 µs per line: 20 MB of bare newlines in a message/rfc822 part took
// ~14 s (past the parse worker's timeout, so the message got 451) though every byte cap held.
test("a message of bare newlines is parsed only up to MAX_PARSE_LINES; later parts still listed", async () => {
  const newlines = "\n".repeat(MAX_PARSE_LINES + 200_000);
  const raw = new TextEncoder().encode(
    'From: a@example.org\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n' +
      `Subject: in\r\n\r\n${newlines}--b\r\nContent-Type: application/pdf; name="late.pdf"\r\n\r\nx\r\n--b--\r\n`,
  );
  const facts = await extractFacts(raw, ENVELOPE);
  expect(facts.parseError).toContain(`more than ${MAX_PARSE_LINES} lines to parse`);
  expect(facts.attachmentTypes).toEqual(["message/rfc822", "application/pdf"]);
  expect(facts.attachments).toContain("late.pdf");
});

// A text/plain base64 body full of fake "--x / Content-Type: multipart/..." spans went to
// postal-mime whole (6.7 MB of base64 took 2.2 s): under a leaf, "--" lines are content.
test("a leaf at the top is one part: fake container spans inside it are capped with it", () => {
  const fake = `--f\nContent-Type: multipart/mixed; boundary=g\n\n${"A".repeat(1000)}\n`.repeat(6000);
  const raw = new TextEncoder().encode(`X: y\n\n${fake}`);
  const kept = Buffer.concat(cutLeafContents(raw, 6, raw.byteLength, "text/plain"));
  expect(raw.byteLength).toBeGreaterThan(TEXT_PART_BYTES + 1024 * 1024);
  expect(kept.byteLength).toBeLessThanOrEqual(TEXT_PART_BYTES);
  expect(kept.toString("latin1")).toBe(fake.slice(0, kept.byteLength));
});

// postal-mime's base64 decoder makes one buffer per '='-ended unit (~1 µs each): 17 MB of "QQ="
// in a base64 message/rfc822 part took 5 s, 4 MB in a text part 1.1 s, and 18 MB of fake
// "--f / Content-Type: multipart/..." spans inside a real base64 text part 5.5 s.
test("runs of '=' are capped per message (MAX_BASE64_PAD_UNITS) from the first part that may be base64 on; a quoted-printable part before it is not counted", async () => {
  const pads = ("QQ=".repeat(25) + "\r\n").repeat(230_000);
  const fake = `--f\r\nContent-Type: multipart/mixed; boundary=g\r\n\r\n${"QQ=".repeat(700)}\r\n`.repeat(9000);
  const wrap = (part: string) =>
    new TextEncoder().encode(
      'From: a@example.org\r\nContent-Type: multipart/mixed; boundary="p"\r\n\r\n--p\r\n' + part +
        '--p\r\nContent-Type: application/pdf; name="late.pdf"\r\n\r\nx\r\n--p--\r\n',
    );
  for (const part of [
    `Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n${pads}`,
    `Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n${pads}`,
    `Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n${fake}`,
    // Fake quoted-printable part headers inside the base64 part: not counted, 18 MB took 4.7 s.
    `Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n${`--f\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n${"QQ=".repeat(700)}\r\n`.repeat(200)}`,
  ]) {
    const facts = await extractFacts(wrap(part), ENVELOPE); // timed in bench/hostile-parse.ts
    expect(facts.parseError).toContain(`more than ${MAX_BASE64_PAD_UNITS} padded base64 units`);
    expect(facts.attachments).toContain("late.pdf"); // the structure after the cut is kept
  }
  const qp = `Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n${"caf=C3=A9 =3D ".repeat(5).concat("=\r\n").repeat(40_000)}`;
  const facts = await extractFacts(wrap(qp), ENVELOPE);
  expect(facts.parseError ?? "").not.toContain("padded");
  expect(facts.body.startsWith("café = café")).toBe(true);
}, 30_000);

test("a budget cuts the contents of an attached message, not its header block", () => {
  const raw = new TextEncoder().encode(
    "X: y\n\n--b\nContent-Type: text/plain\n\n1\n2\n3\n--b\nContent-Type: message/rfc822\n\n" +
      "Subject: in\nContent-Type: multipart/mixed; boundary=in\n\npreamble\n--in\nContent-Type: application/x-msdownload; name=x.exe\n\nTVo=\n--in--\n--b--\n",
  );
  const lines = { left: 2, cut: false, padsLeft: Infinity, padsCut: false };
  const kept = Buffer.concat(cutLeafContents(raw, 6, raw.byteLength, "multipart/mixed", lines)).toString("latin1");
  expect(kept).toBe(
    "--b\nContent-Type: text/plain\n\n1\n2\n--b\nContent-Type: message/rfc822\n\nSubject: in\nContent-Type: multipart/mixed; boundary=in\n\n" +
      "--in\nContent-Type: application/x-msdownload; name=x.exe\n\n--in--\n--b--\n",
  );
  expect(lines.cut).toBe(true);
});

const ATTACHED_EXE = 'Subject: in\r\nContent-Type: multipart/mixed; boundary="in"\r\n\r\n--in\r\nContent-Type: application/octet-stream\r\n' +
  'Content-Disposition: attachment; filename="x.exe"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--in--\r\n';

/** A text part of `text`, then a message/rfc822 part whose inner multipart holds x.exe. */
function textThenAttachedExe(text: string): Uint8Array {
  return new TextEncoder().encode(
    'From: a@example.org\r\nContent-Type: multipart/mixed; boundary="p"\r\n\r\n--p\r\nContent-Type: text/plain\r\n\r\n' + text +
      `\r\n--p\r\nContent-Type: message/rfc822\r\n\r\n${ATTACHED_EXE}--p--\r\n`,
  );
}

// A text part of 1,000,001 bare newlines (977 KB) used up the line budget: the attached message
// after it lost its header, and with it the files inside (an `attachment ends_with .exe` bypass).
test("a used-up line budget still lists the files of a later attached message", async () => {
  const facts = await extractFacts(textThenAttachedExe("\n".repeat(MAX_PARSE_LINES + 1)), ENVELOPE);
  expect(facts.parseError).toContain(`more than ${MAX_PARSE_LINES} lines to parse`);
  expect(facts.attachments).toEqual(["x.exe"]);
  expect(facts.attachmentTypes).toEqual(["message/rfc822", "application/octet-stream"]);
});

// A text part of 100,001 `a=b` lines (489 KB) used up the pad budget: a parse error, and before
// the attached message's header was kept past a budget, the .exe inside it hidden from the rules.
test("'=' in a plain text part is no base64 padding", async () => {
  const facts = await extractFacts(textThenAttachedExe("a=b\r\n".repeat(MAX_BASE64_PAD_UNITS + 1)), ENVELOPE);
  expect(facts.parseError).toBeUndefined();
  expect(facts.attachments).toEqual(["x.exe"]);
});
