/**
 * The yaml library's parse errors, said for an admin editing rules.yaml rather than for a
 * programmer calling the library, and placed where the mistake is: an unclosed quote is
 * reported by the library at the end of the file, a duplicate key without its name, a second
 * document with advice to call another function, a `{ ... }` cut short by ` #` (a comment in
 * YAML, so an unquoted `value: ^Case #\d+ }` loses its `}`) on the line after it, an unquoted
 * `: ` inside a value as "nested mappings". Pure.
 */
import { CST, Lexer, type YAMLError } from "yaml";
import { quoted } from "./schema.ts";

export interface YamlProblem {
  offset: number;
  message: string;
}

/** Lexer marker tokens that stand for no source character. */
const MARKERS = new Set(["doc-mode", "flow-error-end", "scalar"]);

/** Offset of the last quoted scalar the file opens and never closes, or null. */
function unclosedQuoteOffset(text: string): number | null {
  let offset = 0;
  let found: number | null = null;
  for (const token of new Lexer().lex(text)) {
    const type = CST.tokenType(token);
    if (type !== null && MARKERS.has(type)) continue;
    const quote = token[0];
    if ((quote === '"' || quote === "'") && !isClosed(token, quote)) found = offset;
    offset += token.length;
  }
  return found;
}

function isClosed(token: string, quote: string): boolean {
  if (token.length < 2 || !token.endsWith(quote)) return false;
  if (quote === "'") return true; // '' inside is an escaped quote; the lexer ends the token at the closing one
  let backslashes = 0;
  for (let i = token.length - 2; i > 0 && token[i] === "\\"; i--) backslashes++;
  return backslashes % 2 === 0;
}

/** Where the first flow collection (`{` or `[`) the lexer had to end unclosed opens, and whether a comment cut it short. */
function unclosedFlowStart(text: string): { offset: number; bracket: string; comment: boolean } | null {
  let offset = 0;
  let depth = 0;
  let outer: { offset: number; bracket: string; comment: boolean } | null = null;
  for (const token of new Lexer().lex(text)) {
    const type = CST.tokenType(token);
    if (type === "flow-error-end" && outer !== null) return outer;
    if (type !== null && MARKERS.has(type)) continue;
    if (type === "flow-map-start" || type === "flow-seq-start") {
      if (depth++ === 0) outer = { offset, bracket: token, comment: false };
    } else if ((type === "flow-map-end" || type === "flow-seq-end") && depth > 0) {
      if (--depth === 0) outer = null;
    } else if (type === "comment" && outer !== null) outer.comment = true;
    offset += token.length;
  }
  return null;
}

/**
 * A key indented one space too far (`  - name: a` then `     action: drop`) continues the plain
 * value above it, which then holds ': ': the library reports that at the value (`a`, the line
 * before) as nested mappings or a multi-line key, and "put the value in quotes" sent the admin to
 * the wrong line. The line that continues the value, and its key, when the value at `offset`
 * runs onto another line before its ': '; else null.
 */
function overIndentedLine(text: string, offset: number): { offset: number; key: string } | null {
  const colon = /:(?=[ \t\r\n]|$)/g;
  colon.lastIndex = offset;
  const end = colon.exec(text)?.index ?? text.length;
  const newline = text.indexOf("\n", offset);
  if (newline === -1 || newline >= end) return null;
  const start = newline + 1 + (/^[ \t]*/.exec(text.slice(newline + 1, end))?.[0].length ?? 0);
  const key = text.slice(start, text.indexOf(":", start)).trim();
  return start < end && key !== "" ? { offset: start, key: `${key}:` } : null;
}

/** "Map keys must be unique at line 2, column 1:\n…" → "Map keys must be unique". */
function firstLine(message: string): string {
  return (message.split("\n")[0] ?? message).replace(/ at line \d+, column \d+:?$/, "");
}

/** One problem per error (the same message at the same place once). */
export function yamlProblems(errors: readonly YAMLError[], text: string): YamlProblem[] {
  const out: YamlProblem[] = [];
  const seen = new Set<string>();
  // Lexed at most once: a file of thousands of unclosed brackets has thousands of errors.
  let flowStart: ReturnType<typeof unclosedFlowStart> | undefined;
  const unclosedFlow = () => (flowStart === undefined ? (flowStart = unclosedFlowStart(text)) : flowStart);
  for (const err of errors) {
    const problem = describe(err, text, unclosedFlow);
    const key = `${problem.offset}:${problem.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(problem);
  }
  return out;
}

function describe(err: YAMLError, text: string, unclosedFlow: () => ReturnType<typeof unclosedFlowStart>): YamlProblem {
  const offset = err.pos[0];
  const message = firstLine(err.message);
  if (/^Missing closing .?quote/i.test(message)) {
    const start = unclosedQuoteOffset(text);
    return { offset: start ?? offset, message: "quoted text is never closed: add the closing quote" };
  }
  if (/^Source contains multiple documents/.test(message)) {
    return { offset, message: "a second YAML document starts here (---): rules.yaml is one document; remove the --- line" };
  }
  if (/^Map keys must be unique/.test(message)) {
    const key = /^[^:\n]*/.exec(text.slice(offset))?.[0].trim() ?? "";
    return { offset, message: key ? `duplicate key ${quoted(key)}: each key may appear once in a mapping` : "duplicate key: each key may appear once in a mapping" };
  }
  if (err.code === "BAD_INDENT" && /^Flow (map|sequence) in block collection/.test(message)) {
    const start = unclosedFlow();
    if (start !== null) {
      const close = start.bracket === "{" ? "}" : "]";
      return {
        offset: start.offset,
        message: start.comment
          ? `'${start.bracket}' is not closed: ' #' starts a comment in YAML, which hid the rest of the line and its '${close}'; quote the value with '#' in it (value: '^Case #\\d+')`
          : `'${start.bracket}' is never closed: add '${close}', or indent its continuation lines more than the line it opens on`,
      };
    }
  }
  if (err.code === "BLOCK_AS_IMPLICIT_KEY" || err.code === "MULTILINE_IMPLICIT_KEY") {
    const continued = overIndentedLine(text, offset);
    if (continued !== null) {
      return {
        offset: continued.offset,
        message: `${quoted(continued.key)} is indented more than the line above it, so YAML reads it as more of that line's value: indent it as far as the keys beside it`,
      };
    }
  }
  if (err.code === "BLOCK_AS_IMPLICIT_KEY" || err.code === "BLOCK_IN_FLOW") {
    return { offset, message: `${message}: a value with ': ' in it is read as another key: value; put the value in quotes (value: '^Re: .*')` };
  }
  if (/Maximum call stack size exceeded/.test(message)) {
    return { offset, message: "nested too deeply to read (brackets or indentation many levels deep)" };
  }
  return { offset, message };
}
