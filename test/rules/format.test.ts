/** Lint output formats and exit-code mapping. */
import { describe, expect, test } from "bun:test";
import { formatDiagnostics, lintExitCode } from "../../src/rules/format.ts";
import type { Diagnostic } from "../../src/rules/types.ts";

const ERROR: Diagnostic = { severity: "error", file: "rules.yaml", line: 6, col: 51, message: "invalid regex '(': missing )", code: "invalid-regex" };
const WARNING: Diagnostic = { severity: "warning", file: "a,b:c.yaml", line: 2, col: 3, message: "100% loop\nsecond line", code: "forward-loop" };
const UNREADABLE: Diagnostic = { severity: "error", file: "x.yaml", line: 1, col: 1, message: "cannot read rules file (ENOENT)", code: "file-unreadable" };

describe("formats", () => {
  test("text: file:line:col: severity: message [code] plus a summary", () => {
    expect(formatDiagnostics("text", [ERROR, WARNING], 2)).toBe(
      "rules.yaml:6:51: error: invalid regex '(': missing ) [invalid-regex]\n" +
        "a,b:c.yaml:2:3: warning: 100% loop\nsecond line [forward-loop]\n" +
        "1 error, 1 warning in 2 files\n",
    );
    expect(formatDiagnostics("text", [], 1)).toBe("0 errors, 0 warnings in 1 file\n");
  });

  test("json: the diagnostics and a summary", () => {
    const parsed: unknown = JSON.parse(formatDiagnostics("json", [ERROR, WARNING], 2));
    expect(parsed).toEqual({ diagnostics: [ERROR, WARNING], summary: { files: 2, errors: 1, warnings: 1 } });
  });

  test("github: workflow commands with escaped properties and data", () => {
    expect(formatDiagnostics("github", [ERROR, WARNING], 2)).toBe(
      "::error file=rules.yaml,line=6,col=51,title=invalid-regex::invalid regex '(': missing )\n" +
        "::warning file=a%2Cb%3Ac.yaml,line=2,col=3,title=forward-loop::100%25 loop%0Asecond line\n",
    );
    expect(formatDiagnostics("github", [], 1)).toBe("");
  });
});

describe("exit codes", () => {
  test("0 without errors (warnings allowed), 1 with errors, 2 when a file is unreadable", () => {
    expect(lintExitCode([])).toBe(0);
    expect(lintExitCode([WARNING])).toBe(0);
    expect(lintExitCode([WARNING, ERROR])).toBe(1);
    expect(lintExitCode([ERROR, UNREADABLE])).toBe(2);
  });
});
