/**
 * Hostile inputs hit the named limits: facts come back partial with `parseError` naming the
 * limit, never a throw. Timing is not asserted here (see bench/hostile-parse.ts); cases over
 * 5 MB are left to the bench so this file stays quick.
 */
import { describe, expect, test } from "bun:test";
import { extractFacts } from "../../src/parse/extract.ts";
import {
  MAX_ADDRESSES_PER_LIST, MAX_BODY_TEXT_CHARS, MAX_BOUNDARY_LINES, MAX_HEADER_FIELD_BYTES, MAX_HEADER_FIELDS, MAX_NAMED_FIELDS_PAST_LIMIT,
  MAX_MIME_DEPTH, MAX_NESTED_MESSAGES,
} from "../../src/parse/limits.ts";
import type { Envelope, MessageFacts } from "../../src/types.ts";
import { HOSTILE_CASES, manyParts, manyRfc822, nestedMultipart } from "./hostile-cases.ts";

const ENVELOPE: Envelope = { mailFrom: "", rcptTo: ["a@company.com"], clientIp: "127.0.0.1", helo: "test", tls: false };
const MAX_TEST_CASE_BYTES = 5 * 1024 * 1024;
const FIELD_CUT = `header field longer than ${MAX_HEADER_FIELD_BYTES} bytes`;

/** What each hostile case must show; cases not listed must at least parse. */
const EXPECTED: Record<string, (facts: MessageFacts) => void> = {
  "to-encoded-words-2mb": (f) => {
    expect(f.parseError).toContain(FIELD_CUT);
    expect(f.to.length).toBe(MAX_ADDRESSES_PER_LIST);
    expect(f.parseError).toContain(`more than ${MAX_ADDRESSES_PER_LIST} To addresses`);
  },
  "to-no-at-300k": (f) => {
    expect(f.parseError).toContain(FIELD_CUT);
    expect(f.to).toEqual([]);
  },
  "to-many-addresses": (f) => expect(f.to.length).toBe(MAX_ADDRESSES_PER_LIST),
  "to-fields-many": (f) => expect(f.parseError).toContain(`more than ${MAX_ADDRESSES_PER_LIST} To addresses`),
  "subject-encoded-words-2mb": (f) => {
    expect(f.parseError).toContain(FIELD_CUT);
    const second = f.headers.get("subject")?.[1] ?? ""; // the first Subject is BASE_HEADERS' one
    expect(second.length).toBeLessThanOrEqual(MAX_HEADER_FIELD_BYTES);
    expect(second.startsWith("견견견")).toBe(true);
  },
  "to-colons-1.9mb": (f) => expect(f.parseError).toContain(FIELD_CUT),
  "filename-encoded-words": (f) => {
    expect(f.parseError).toBeUndefined();
    expect(f.attachments[0]?.startsWith("견견")).toBe(true);
  },
  "filename-spaces-200k": (f) => {
    expect(f.parseError).toBeUndefined();
    expect(f.attachments).toEqual([`a${" ".repeat(900 * 222)}x.exe`]);
  },
  "header-folds-200k": (f) => expect(f.parseError).toContain(FIELD_CUT),
  "many-headers-100k": (f) => {
    expect(f.parseError).toContain(`more than ${MAX_HEADER_FIELDS} header fields`);
    // The fields the facts read by name are kept past the limit (a bounded number of them).
    expect([...f.headers.values()].reduce((n, values) => n + values.length, 0)).toBeLessThanOrEqual(MAX_HEADER_FIELDS + MAX_NAMED_FIELDS_PAST_LIMIT);
  },
  "deep-multipart-250": (f) => expect(f.parseError).toContain(`nesting depth of ${MAX_MIME_DEPTH} levels`),
  "deep-multipart-5000": (f) => expect(f.parseError).toContain(`more than ${MAX_BOUNDARY_LINES} MIME boundary lines`),
  "many-rfc822-50k": (f) => expect(f.parseError).toContain("MIME boundary lines"),
  // 10 levels are within the depth now; the 2,000 parts per level reach the boundary-line limit.
  "nested-rfc822-10x2000": (f) => expect(f.parseError).toContain(`more than ${MAX_BOUNDARY_LINES} MIME boundary lines`),
};

describe("hostile cases under 5 MB", () => {
  for (const hostile of HOSTILE_CASES) {
    test(hostile.name, async () => {
      const raw = hostile.build();
      if (raw.length > MAX_TEST_CASE_BYTES) {
        console.log(`skipped ${hostile.name}: ${raw.length} bytes, timed by bench/hostile-parse.ts instead`);
        return;
      }
      const facts = await extractFacts(raw, ENVELOPE);
      expect(facts.size).toBe(raw.length);
      expect(facts.from).toBe(hostile.name === "from-quotes-2mb" ? "" : "a@example.com");
      EXPECTED[hostile.name]?.(facts);
    });
  }
});

describe("structural limits", () => {
  test("MIME depth within the limit parses, beyond it yields header facts only", async () => {
    const within = await extractFacts(nestedMultipart(MAX_MIME_DEPTH - 2), ENVELOPE);
    expect(within.body).toContain("inner");
    expect(within.parseError).toBeUndefined();
    const beyond = await extractFacts(nestedMultipart(MAX_MIME_DEPTH + 5), ENVELOPE);
    expect(beyond.body).toBe("");
    expect(beyond.subject).toBe("hostile");
    expect(beyond.parseError).toContain("nesting depth");
  });

  test("parts past the boundary-line limit are not inspected", async () => {
    const facts = await extractFacts(manyParts(MAX_BOUNDARY_LINES + 500), ENVELOPE);
    expect(facts.parseError).toContain(`more than ${MAX_BOUNDARY_LINES} MIME boundary lines`);
    expect(facts.body.length).toBeGreaterThan(0);
  });

  test("only MAX_NESTED_MESSAGES attached messages are parsed", async () => {
    const facts = await extractFacts(manyRfc822(MAX_NESTED_MESSAGES + 5), ENVELOPE);
    expect(facts.attachmentTypes.filter((t) => t === "message/rfc822").length).toBe(MAX_NESTED_MESSAGES + 5);
    expect(facts.body.split("hello").length - 1).toBe(MAX_NESTED_MESSAGES);
    expect(facts.parseError).toContain("nested messages beyond");
  });

  // Forward-as-attachment chains: an .exe four attached messages down was not looked at while
  // only 3 levels were (an `attachment ends_with .exe` rule let it through). The depth is bounded
  // by the same count and byte budgets as siblings are (bench/hostile-parse.ts: rfc822-chain-*).
  test("a file in an attached message nested up to MAX_NESTED_MESSAGES deep is listed; one level more is not", async () => {
    const chain = (depth: number): Uint8Array => {
      let inner = `Content-Type: multipart/mixed; boundary="in"\r\n\r\n--in\r\nContent-Type: text/plain\r\n\r\nhi\r\n` +
        `--in\r\nContent-Type: application/octet-stream; name="x.exe"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVo=\r\n--in--\r\n`;
      for (let level = 0; level < depth; level++) inner = `Subject: fwd ${level}\r\nContent-Type: message/rfc822\r\n\r\n${inner}`;
      return new TextEncoder().encode(`From: a@example.com\r\nSubject: chain\r\nMIME-Version: 1.0\r\n${inner}`);
    };
    for (const depth of [4, MAX_NESTED_MESSAGES]) {
      const facts = await extractFacts(chain(depth), ENVELOPE);
      expect({ depth, exe: facts.attachments.includes("x.exe"), parseError: facts.parseError }).toEqual({ depth, exe: true, parseError: undefined });
    }
    const beyond = await extractFacts(chain(MAX_NESTED_MESSAGES + 1), ENVELOPE);
    expect(beyond.attachments).not.toContain("x.exe");
    expect(beyond.parseError).toContain("nested messages beyond");
  });

  test("body text is capped", async () => {
    const raw = new TextEncoder().encode(`Subject: big\r\n\r\n${"word ".repeat(MAX_BODY_TEXT_CHARS / 4)}`);
    const facts = await extractFacts(raw, ENVELOPE);
    expect(facts.body.length).toBe(MAX_BODY_TEXT_CHARS);
    expect(facts.parseError).toContain("body text longer");
  });

  test("a refused MIME structure is parsed again, cut short", async () => {
    // many parts whose headers together exceed postal-mime's part-header budget
    const part = `--p\r\nContent-Type: text/plain\r\nX-Pad: ${"x".repeat(200)}\r\n\r\nbody\r\n`;
    const raw = new TextEncoder().encode(`Subject: s\r\nContent-Type: multipart/mixed; boundary=p\r\n\r\n${part.repeat(2000)}--p--\r\n`);
    const facts = await extractFacts(raw, ENVELOPE);
    expect(facts.parseError).toContain("Maximum header size");
    expect(facts.parseError).toContain("parsed again, cut short");
    expect(facts.body).toContain("body");
  });
});
