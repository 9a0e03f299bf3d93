/**
 * Entry points for turning a rules file into a RuleSet: `parseRules` (text → rules or
 * diagnostics, pure apart from the optional clock default), `loadRules` (reads the file,
 * hashes its bytes for the version), and `lintRules` (diagnostics only). All three go
 * through validateRulesText, so what lint refuses the loader refuses. A file that cannot
 * be read yields one `file-unreadable` diagnostic (CLI exit 2), never a throw.
 */
import { createHash } from "node:crypto";
import { readConfigFile } from "../read-file.ts";
import { MAX_RULES_FILE_BYTES } from "./schema.ts";
import type { Diagnostic, ParseResult, RuleSet } from "./types.ts";
import { validateRulesText } from "./validate.ts";

/** Hex digits of the SHA-256 kept as the rules version (shown on the stats page). */
const VERSION_HEX_DIGITS = 12;

export const UNREADABLE_CODE = "file-unreadable";

export interface ParseOptions {
  /** When the rules were loaded (defaults to now); passed in so tests are deterministic. */
  loadedAt?: Date;
  /** The file's bytes, when known, for the version hash (defaults to the UTF-8 text). */
  bytes?: Uint8Array;
}

export function rulesVersion(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex").slice(0, VERSION_HEX_DIGITS);
}

function fileDiagnostic(file: string, code: string, message: string, at = { line: 1, col: 1 }): Diagnostic {
  return { severity: "error", file, ...at, message, code };
}

const REPLACEMENT_CHAR = "\ufffd";
const REPLACEMENT_BYTES = Buffer.from(REPLACEMENT_CHAR, "utf8");
const BOM = "\ufeff";

/**
 * line:col of the first byte that is not UTF-8 (a Latin-1 "ü" deep in the file), as the other
 * diagnostics count them: at 1:1 the admin had the whole file to search. A U+FFFD the file
 * really contains is passed over.
 */
function firstInvalidUtf8(bytes: Uint8Array): { line: number; col: number } {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
  let byteOffset = 0;
  let from = 0;
  for (let at = text.indexOf(REPLACEMENT_CHAR); at >= 0; at = text.indexOf(REPLACEMENT_CHAR, at + 1)) {
    byteOffset += Buffer.byteLength(text.slice(from, at), "utf8");
    from = at;
    const encoded = Buffer.from(bytes.buffer, bytes.byteOffset + byteOffset, Math.min(REPLACEMENT_BYTES.length, bytes.byteLength - byteOffset));
    if (!encoded.equals(REPLACEMENT_BYTES)) {
      const lineStart = text.lastIndexOf("\n", at) + 1;
      // A leading BOM is no column: the strict decoder drops it before the other diagnostics count.
      const bom = lineStart === 0 && text.startsWith(BOM) ? 1 : 0;
      return { line: text.slice(0, lineStart).split("\n").length, col: at - lineStart + 1 - bom };
    }
    byteOffset += REPLACEMENT_BYTES.length;
    from = at + 1;
  }
  return { line: 1, col: 1 };
}

/**
 * The limit is on the file's UTF-8 bytes, as readRulesFile applies it: `text.length` counts
 * UTF-16 units, a third of the bytes for Hangul or CJK, so a text under it in characters may
 * be a file serve refuses (and `rules add` would write one).
 */
function overSizeLimit(text: string): boolean {
  return Buffer.byteLength(text, "utf8") > MAX_RULES_FILE_BYTES;
}

function tooLarge(file: string): Diagnostic {
  return fileDiagnostic(file, "file-too-large", `rules file is larger than ${MAX_RULES_FILE_BYTES} bytes`);
}

/** Diagnostics for a rules file's text (errors and warnings, sorted by position). */
export function lintRules(text: string, fileName: string): Diagnostic[] {
  if (overSizeLimit(text)) {
    return [tooLarge(fileName)];
  }
  return validateRulesText(text, fileName).diagnostics;
}

export function parseRules(text: string, fileName: string, options: ParseOptions = {}): ParseResult {
  if (overSizeLimit(text)) return { ok: false, diagnostics: lintRules(text, fileName) };
  const { diagnostics, compiled } = validateRulesText(text, fileName);
  if (compiled === null) return { ok: false, diagnostics };
  const rules: RuleSet = Object.freeze({
    fileName,
    domains: Object.freeze(compiled.domains),
    default: compiled.defaultDecision,
    rules: Object.freeze(compiled.rules),
    version: rulesVersion(options.bytes ?? text),
    loadedAt: options.loadedAt ?? new Date(),
    slotCount: compiled.slotCount,
  });
  return { ok: true, rules, diagnostics };
}

export type ReadResult = { ok: true; text: string; bytes: Uint8Array } | { ok: false; diagnostic: Diagnostic };

/** Reads a rules file as strict UTF-8 within the size limit. */
export async function readRulesFile(path: string): Promise<ReadResult> {
  let bytes: Uint8Array;
  try {
    // A regular file, at most the limit: a FIFO or /dev/zero put there neither hangs nor fills memory.
    bytes = await readConfigFile(path, MAX_RULES_FILE_BYTES);
  } catch (err) {
    const code = err instanceof Error && "code" in err ? String(err.code) : String(err);
    if (code === "EFBIG") return { ok: false, diagnostic: tooLarge(path) };
    const reason = code === "ENOTREG" ? "not a regular file" : code;
    return { ok: false, diagnostic: fileDiagnostic(path, UNREADABLE_CODE, `cannot read rules file (${reason})`) };
  }
  if (bytes.byteLength > MAX_RULES_FILE_BYTES) {
    return { ok: false, diagnostic: tooLarge(path) };
  }
  try {
    const text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
    return { ok: true, text, bytes };
  } catch {
    return { ok: false, diagnostic: fileDiagnostic(path, "not-utf8", "rules file is not valid UTF-8", firstInvalidUtf8(bytes)) };
  }
}

/** Reads, validates and compiles a rules file. Never throws. */
export async function loadRules(path: string, options: Omit<ParseOptions, "bytes"> = {}): Promise<ParseResult> {
  const read = await readRulesFile(path);
  if (!read.ok) return { ok: false, diagnostics: [read.diagnostic] };
  return parseRules(read.text, path, { ...options, bytes: read.bytes });
}
