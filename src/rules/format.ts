/**
 * Renders lint diagnostics for humans (`text`), programs (`json`) and GitHub Actions
 * annotations (`github`), and maps them to the lint exit code (SPEC §1: 0 no errors,
 * 1 errors, 2 a file unreadable). Pure string building.
 */
import { terminalSafeLine } from "../log/terminal-json.ts";
import { UNREADABLE_CODE } from "./load.ts";
import type { Diagnostic } from "./types.ts";

export const LINT_FORMATS = ["text", "json", "github"] as const;
export type LintFormat = (typeof LINT_FORMATS)[number];

export interface LintSummary {
  files: number;
  errors: number;
  warnings: number;
}

export function summarize(files: number, diagnostics: readonly Diagnostic[]): LintSummary {
  const errors = diagnostics.filter((d) => d.severity === "error").length;
  return { files, errors, warnings: diagnostics.length - errors };
}

export function lintExitCode(diagnostics: readonly Diagnostic[]): number {
  if (diagnostics.some((d) => d.code === UNREADABLE_CODE)) return 2;
  return diagnostics.some((d) => d.severity === "error") ? 1 : 0;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** `file:line:col: severity: message [code]`, one line: a file name from a glob may hold a line feed or an ESC (messages quote values escaped already). */
export function formatDiagnosticLine(d: Diagnostic): string {
  return `${terminalSafeLine(d.file)}:${d.line}:${d.col}: ${d.severity}: ${d.message} [${d.code}]`;
}

export function formatText(diagnostics: readonly Diagnostic[], summary: LintSummary): string {
  const lines = diagnostics.map(formatDiagnosticLine);
  lines.push(`${plural(summary.errors, "error")}, ${plural(summary.warnings, "warning")} in ${plural(summary.files, "file")}`);
  return `${lines.join("\n")}\n`;
}

export function formatJson(diagnostics: readonly Diagnostic[], summary: LintSummary): string {
  return `${JSON.stringify({ diagnostics, summary }, null, 2)}\n`;
}

/** GitHub workflow-command escaping: data escapes %, CR, LF; properties also : and ,. */
function escapeData(text: string): string {
  return text.replaceAll("%", "%25").replaceAll("\r", "%0D").replaceAll("\n", "%0A");
}

function escapeProperty(text: string): string {
  return escapeData(text).replaceAll(":", "%3A").replaceAll(",", "%2C");
}

export function formatGithub(diagnostics: readonly Diagnostic[]): string {
  const lines = diagnostics.map((d) => {
    const props = `file=${escapeProperty(d.file)},line=${d.line},col=${d.col},title=${escapeProperty(d.code)}`;
    return `::${d.severity} ${props}::${escapeData(d.message)}`;
  });
  return lines.length === 0 ? "" : `${lines.join("\n")}\n`;
}

export function formatDiagnostics(format: LintFormat, diagnostics: readonly Diagnostic[], files: number): string {
  const summary = summarize(files, diagnostics);
  if (format === "json") return formatJson(diagnostics, summary);
  if (format === "github") return formatGithub(diagnostics);
  return formatText(diagnostics, summary);
}
