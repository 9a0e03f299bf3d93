/**
 * The yaml library's parse errors, said for an admin editing rules.yaml rather than for a
 * programmer calling the library, and placed where the mistake is: an unclosed quote is
 * reported by the library at the end of the file, a duplicate key without its name, a second
 * document with advice to call another function. Pure.
 */
import { CST, Lexer, type YAMLError } from "yaml";

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

/** "Map keys must be unique at line 2, column 1:\n…" → "Map keys must be unique". */
function firstLine(message: string): string {
  return (message.split("\n")[0] ?? message).replace(/ at line \d+, column \d+:?$/, "");
}

/** One problem per error (the same message at the same place once). */
export function yamlProblems(errors: readonly YAMLError[], text: string): YamlProblem[] {
  const out: YamlProblem[] = [];
  const seen = new Set<string>();
  for (const err of errors) {
    const problem = describe(err, text);
    const key = `${problem.offset}:${problem.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(problem);
  }
  return out;
}

function describe(err: YAMLError, text: string): YamlProblem {
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
    return { offset, message: key ? `duplicate key '${key}': each key may appear once in a mapping` : "duplicate key: each key may appear once in a mapping" };
  }
  if (/Maximum call stack size exceeded/.test(message)) {
    return { offset, message: "nested too deeply to read (brackets or indentation many levels deep)" };
  }
  return { offset, message };
}
