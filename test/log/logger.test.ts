import { expect, test } from "bun:test";
import { createLogger } from "../../src/log/logger.ts";
import { terminalSafeJson } from "../../src/log/terminal-json.ts";

test("json lines carry every field and are not throttled", () => {
  const lines: string[] = [];
  const log = createLogger({ level: "info", format: "json", write: (s) => lines.push(s) });
  for (let i = 0; i < 5; i++) log.info("smtp session", { client: "192.0.2.1", rcpt: ["a@x.test"], id: "ID" });
  log.debug("hidden at info");
  expect(lines).toHaveLength(5);
  const obj = JSON.parse(lines[0]!);
  expect(obj).toMatchObject({ level: "info", msg: "smtp session", client: "192.0.2.1", rcpt: ["a@x.test"], id: "ID" });
});

test("text lines are key=value with quoting", () => {
  const lines: string[] = [];
  const log = createLogger({ level: "debug", format: "text", write: (s) => lines.push(s) });
  log.warn("delivery deferred", { id: "ABC", error: "451 try later", n: 2 });
  expect(lines[0]).toMatch(/WARN  delivery deferred id=ABC error="451 try later" n=2\n$/);
});

test("text values: lists are one quoted value; controls, bidi overrides and separators are escaped", () => {
  const lines: string[] = [];
  const log = createLogger({ level: "debug", format: "text", write: (s) => lines.push(s) });
  log.info("smtp session", { from: "\u202egro.live@evil.example", refused: ["x=y@other.example (550)", "z@other.example (550)"], recipients: ["a@company.com", "b@company.com"], helo: "a\u001b[2Jb", note: "x\u2028y" });
  expect(lines[0]).toEndWith(
    ' smtp session from="\\u202egro.live@evil.example" refused="x=y@other.example (550),z@other.example (550)" recipients=a@company.com,b@company.com helo="a\\u001b[2Jb" note="x\\u2028y"\n',
  );
  expect(lines[0]).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u202e\u2028]/);
});

test("terminalSafeJson writes a lone surrogate as U+FFFD (strict JSON readers refuse \\ud83d); pairs and escaped text stay", () => {
  const value = { cut: "a\u{1F600}".slice(0, 2), low: "\udc00x", pair: "\u{1F600}", text: "\\ud83d", nested: ["\ud800"] };
  expect(JSON.parse(terminalSafeJson(value))).toEqual({ cut: "a\ufffd", low: "\ufffdx", pair: "\u{1F600}", text: "\\ud83d", nested: ["\ufffd"] });
});

test("terminalSafeJson: a string's own backslash before 'ud800' is text, not an escaped surrogate; pairs stay whole", () => {
  const values = ["\\ud800", "\\\\ud800", "a\\\ud83d", "😀", "x\ud83d\\ud83d", "\udc00\\\udc00"];
  for (const value of values) {
    const text = terminalSafeJson({ value });
    expect(JSON.parse(text).value).toBe(value.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, "\ufffd"));
    expect(text).not.toMatch(/(?<!\\)(?:\\\\)*\\ud[89a-f]/);
  }
});
