/**
 * The header block reader's limits at their exact values: MAX_HEADER_FIELDS fields are all kept
 * without a note, one more is noted and dropped (unless it is one the facts read by name); a
 * field of MAX_HEADER_FIELD_BYTES is whole, one byte more is cut and noted; the whole block's
 * MAX_HEADER_BLOCK_BYTES cap and where the body starts past it; which names count as fields.
 */
import { expect, test } from "bun:test";
import { splitHeaderBlock } from "../../src/parse/header-block.ts";
import { MAX_HEADER_BLOCK_BYTES, MAX_HEADER_FIELD_BYTES, MAX_HEADER_FIELDS, MAX_NAMED_FIELDS_PAST_LIMIT } from "../../src/parse/limits.ts";

const block = (lines: string[]) => splitHeaderBlock(new TextEncoder().encode(`${lines.join("\r\n")}\r\n\r\nbody\r\n`));
const fields = (n: number) => Array.from({ length: n }, (_, i) => `X-F${i}: v`);

test("exactly MAX_HEADER_FIELDS fields: all kept, no note; one more: noted, dropped, but a Subject past it kept", () => {
  const atLimit = block(fields(MAX_HEADER_FIELDS));
  expect(atLimit.fields).toHaveLength(MAX_HEADER_FIELDS);
  expect(atLimit.notes).toEqual([]);
  const over = block([...fields(MAX_HEADER_FIELDS + 1), "Subject: still read"]);
  expect(over.fields).toHaveLength(MAX_HEADER_FIELDS + 1);
  expect(over.fields.at(-1)?.name).toBe("subject");
  expect(over.notes).toHaveLength(1);
  expect(over.notes[0]).toStartWith(`more than ${MAX_HEADER_FIELDS} header fields`);
});

test("a field of exactly MAX_HEADER_FIELD_BYTES is whole; one byte more is cut to it and noted", () => {
  const line = (bytes: number) => `X-Long: ${"a".repeat(bytes - "X-Long: ".length)}`;
  const whole = block([line(MAX_HEADER_FIELD_BYTES)]);
  expect(whole.notes).toEqual([]);
  expect(whole.fields[0]?.value.length).toBe(MAX_HEADER_FIELD_BYTES - "X-Long:".length);
  const cut = block([line(MAX_HEADER_FIELD_BYTES + 1)]);
  expect(cut.notes).toEqual([`header field longer than ${MAX_HEADER_FIELD_BYTES} bytes, truncated`]);
  expect(cut.fields[0]?.value.length).toBe(MAX_HEADER_FIELD_BYTES - "X-Long:".length);
});

const encode = (text: string) => new TextEncoder().encode(text);
/** `n` bytes of header lines (`X-Pad: aaa…` + CRLF, or LF), each under MAX_HEADER_FIELD_BYTES, few of them. */
function padding(n: number, eol = "\r\n"): string {
  const lines: string[] = [];
  let left = n;
  while (left > 0) {
    const size = left >= 60_100 ? 60_000 : left; // a last line of 8..60,099 bytes takes the remainder
    lines.push(`X-Pad: ${"a".repeat(size - "X-Pad: ".length - eol.length)}${eol}`);
    left -= size;
  }
  return lines.join("");
}
const names = (b: ReturnType<typeof splitHeaderBlock>) => b.fields.map((f) => f.name);
const BLOCK_NOTE = `header block longer than ${MAX_HEADER_BLOCK_BYTES} bytes, the rest ignored`;

test("the header block cap: a field starting before MAX_HEADER_BLOCK_BYTES is read whole, one starting at it is ignored and noted", () => {
  const before = splitHeaderBlock(encode(`${padding(MAX_HEADER_BLOCK_BYTES - 1)}Subject: read\r\nTo: past@company.com\r\n\r\nbody\r\n`));
  expect(padding(MAX_HEADER_BLOCK_BYTES - 1).length).toBe(MAX_HEADER_BLOCK_BYTES - 1);
  expect(names(before)).toContain("subject");
  expect(names(before)).not.toContain("to");
  expect(before.notes).toEqual([BLOCK_NOTE]);
  const at = splitHeaderBlock(encode(`${padding(MAX_HEADER_BLOCK_BYTES)}Subject: past\r\n\r\nbody\r\n`));
  expect(names(at)).not.toContain("subject");
  expect(at.notes).toEqual([BLOCK_NOTE]);
});

test("past the header block cap the body still starts after the first blank line (CRLF or LF), so body rules see it", () => {
  const head = `${padding(MAX_HEADER_BLOCK_BYTES + 100_000)}Subject: hidden\r\n`;
  const crlf = encode(`${head}\r\ncheap viagra\r\n`);
  expect(splitHeaderBlock(crlf).bodyStart).toBe(crlf.length - "cheap viagra\r\n".length);
  const lfHead = `${padding(MAX_HEADER_BLOCK_BYTES + 100_000, "\n")}Subject: hidden\n`;
  const lf = encode(`${lfHead}\ncheap viagra\n`);
  expect(splitHeaderBlock(lf).bodyStart).toBe(lf.length - "cheap viagra\n".length);
  // A blank line that starts exactly at the cap ends the block too.
  const atCap = encode(`${padding(MAX_HEADER_BLOCK_BYTES)}\r\ncheap viagra\r\n`);
  expect(splitHeaderBlock(atCap).bodyStart).toBe(MAX_HEADER_BLOCK_BYTES + 2);
  const atCapLf = encode(`${padding(MAX_HEADER_BLOCK_BYTES, "\n")}\ncheap viagra\n`);
  expect(splitHeaderBlock(atCapLf).bodyStart).toBe(MAX_HEADER_BLOCK_BYTES + 1);
  // No blank line at all: everything is header, there is no body.
  const noBody = encode(head);
  expect(splitHeaderBlock(noBody).bodyStart).toBe(noBody.length);
});

test("a field cut at MAX_HEADER_FIELD_BYTES does not cut the fields after it", () => {
  const b = block([`X-Long: ${"a".repeat(MAX_HEADER_FIELD_BYTES + 10)}`, "Subject: after the long one", "To: b@company.com"]);
  expect(b.notes).toEqual([`header field longer than ${MAX_HEADER_FIELD_BYTES} bytes, truncated`]);
  expect(b.fields.map((f) => [f.name, new TextDecoder().decode(f.value)]).slice(1)).toEqual([["subject", " after the long one"], ["to", " b@company.com"]]);
});

test("past MAX_HEADER_FIELDS every field the facts and the MIME parse read by name is kept, any other is not", () => {
  const named = ["Subject: s", "From: f@sender.example", "To: t@company.com", "Cc: c@company.com", "Content-Type: text/plain", "Content-Transfer-Encoding: 7bit", "MIME-Version: 1.0"];
  const b = block([...fields(MAX_HEADER_FIELDS), "Reply-To: r@sender.example", ...named, "X-Other: o"]);
  expect(names(b).slice(MAX_HEADER_FIELDS)).toEqual(["subject", "from", "to", "cc", "content-type", "content-transfer-encoding", "mime-version"]);
});

test("past MAX_HEADER_FIELDS at most MAX_NAMED_FIELDS_PAST_LIMIT named fields are kept", () => {
  const subjects = Array.from({ length: MAX_NAMED_FIELDS_PAST_LIMIT + 1 }, (_, i) => `Subject: s${i}`);
  const b = block([...fields(MAX_HEADER_FIELDS), ...subjects]);
  expect(b.fields).toHaveLength(MAX_HEADER_FIELDS + MAX_NAMED_FIELDS_PAST_LIMIT);
  expect(new TextDecoder().decode(b.fields.at(-1)?.value)).toBe(` s${MAX_NAMED_FIELDS_PAST_LIMIT - 1}`);
});

test("a header block without a blank line is all header, no body, and its last line without a line break is whole", () => {
  const raw = encode("From: a@sender.example\r\nSubject: hello");
  const b = splitHeaderBlock(raw);
  expect(b.bodyStart).toBe(raw.length);
  expect(b.fields.map((f) => [f.name, new TextDecoder().decode(f.value)])).toEqual([["from", " a@sender.example"], ["subject", " hello"]]);
});

test("whitespace around a name: a first line starting with a space, a space or tab before the colon, a colon on a folded line", () => {
  const b = splitHeaderBlock(encode(" Subject: first\r\nTo\t: b@company.com\r\nFrom\r\n : <a@sender.example>\r\n\r\nbody\r\n"));
  expect(b.fields.map((f) => [f.originalName, new TextDecoder().decode(f.value)])).toEqual([["Subject", " first"], ["To", " b@company.com"], ["From", " <a@sender.example>"]]);
});

test("a line whose name is empty or has a space, a control byte or DEL in it is not a field", () => {
  const b = block([": no name", "X Y: space", "X\x01Y: control", "X\x7fY: del", "X-Ok: kept"]);
  expect(b.fields.map((f) => f.originalName)).toEqual(["X-Ok"]);
});

test("a header block that ends exactly at MAX_HEADER_BLOCK_BYTES lost nothing: no note, its fields all read", () => {
  const head = `${padding(MAX_HEADER_BLOCK_BYTES - "Subject: last\r\n".length)}Subject: last\r\n`;
  expect(head.length).toBe(MAX_HEADER_BLOCK_BYTES);
  for (const raw of [encode(`${head}\r\nbody\r\n`), encode(`${head}\r\n`)]) {
    const b = splitHeaderBlock(raw);
    expect(b.notes).toEqual([]);
    expect(names(b).at(-1)).toBe("subject");
    expect(b.bodyStart).toBe(MAX_HEADER_BLOCK_BYTES + 2);
  }
});

test("a line of only spaces or tabs ends the block when text follows it, and is folding when header lines follow", () => {
  const at = (text: string) => {
    const parsed = splitHeaderBlock(encode(text));
    return { names: parsed.fields.map((f) => f.name), body: new TextDecoder().decode(encode(text).subarray(parsed.bodyStart)) };
  };
  // The sender's empty line with a space in it (a Gmail-delivered message of the corpus): the text is the body.
  expect(at("Subject: hi\r\nContent-Type: text/plain\r\n \r\nwire transfer\r\n")).toEqual({ names: ["subject", "content-type"], body: "wire transfer\r\n" });
  expect(at("Subject: hi\n\t \nwire transfer\n")).toEqual({ names: ["subject"], body: "wire transfer\n" });
  expect(at("Subject: hi\r\n \r\n--boundary\r\n")).toEqual({ names: ["subject"], body: "--boundary\r\n" });
  // Followed by a field, a folded line or the empty line, it is folding as before (messages that start with one exist).
  expect(at(" \r\nFrom: a@b.example\r\nSubject: hi\r\n\r\nbody\r\n")).toEqual({ names: ["from", "subject"], body: "body\r\n" });
  expect(at("Subject: hi\r\n \r\nDate  : Mon\r\n\r\nbody\r\n")).toEqual({ names: ["subject", "date"], body: "body\r\n" });
  expect(at("Subject: hi\r\n \r\n there\r\n\r\nbody\r\n")).toEqual({ names: ["subject"], body: "body\r\n" });
  expect(at("Subject: hi\r\n \r\n\r\nbody\r\n")).toEqual({ names: ["subject"], body: "body\r\n" });
});

test("the block says when it ended at a line of spaces; read with blankLinesFold it goes on to the empty line", () => {
  const text = "Subject: hi\r\n \r\nX\r\nFrom: CEO <ceo@company.com>\r\n\r\nbody\r\n";
  const first = splitHeaderBlock(encode(text));
  expect({ names: first.fields.map((f) => f.name), ended: first.endedAtBlankLine }).toEqual({ names: ["subject"], ended: true });
  const folded = splitHeaderBlock(encode(text), { blankLinesFold: true });
  expect({ names: folded.fields.map((f) => f.name), body: text.slice(folded.bodyStart), ended: folded.endedAtBlankLine }).toEqual({ names: ["subject", "from"], body: "body\r\n", ended: false });
  expect(splitHeaderBlock(encode("Subject: hi\r\n\r\n \r\nX\r\n")).endedAtBlankLine).toBe(false);
});
