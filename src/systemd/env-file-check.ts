/**
 * Lines of an existing /etc/mailgw/mailgw.env that systemd's EnvironmentFile= reads otherwise
 * than mailgw's own reader does (systemd.exec(5); src/basic/env-file.c), so the service would
 * run with other settings than `serve --env-file` and `systemd install` itself read from the same
 * file: `export SMTP_PORT=25` is dropped by systemd (the unit got CAP_NET_BIND_SERVICE, the
 * service listened on 2525), a BOM becomes part of the first name (that setting is dropped), a
 * note after a value is kept in it, a backslash is an escape.
 *
 * Pure: text in, warnings out, each `file:line: KEY: …`, never a value (it may be a secret).
 * Trusts: the text has passed parseDotenv (one KEY=value per line, quotes closed).
 */

const UTF8_BOM = [0xef, 0xbb, 0xbf];
const ASSIGNMENT = /^(export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$/;
const NOTE = "systemd keeps a note after the value as part of it (only a line that starts with # is a comment): move the note to a line of its own";
const ESCAPE = "systemd reads a backslash as an escape and drops it, where mailgw keeps it: put the value in single quotes";

export function systemdReadingWarnings(bytes: Uint8Array, text: string, file: string): string[] {
  const warnings: string[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const m = ASSIGNMENT.exec(line.trim());
    if (!m) return;
    const [, exported, key = "", afterEquals = ""] = m;
    const at = `${file}:${i + 1}: ${key}`;
    if (i === 0 && UTF8_BOM.every((b, j) => bytes[j] === b)) {
      warnings.push(`${at}: the file starts with a byte order mark, which systemd reads as part of the name, so it drops this setting: save the file as UTF-8 without BOM`);
    }
    if (exported) warnings.push(`${at}: systemd ignores a line that starts with 'export': remove 'export '`);
    const problem = valueProblem(afterEquals);
    if (problem) warnings.push(`${at}: ${problem}`);
  });
  return warnings;
}

/** How systemd's reading of the value (all that follows `=`) differs from mailgw's, or null. */
function valueProblem(afterEquals: string): string | null {
  const value = afterEquals.trim();
  const quote = value[0];
  if (quote === '"' || quote === "'") {
    // mailgw drops `"value" # note`; systemd glues the note on after the closing quote.
    if (/^(["']).*?\1\s+#/.test(value)) return NOTE;
    // Inside double quotes only \" \\ \` \$ lose their backslash; inside single quotes none does.
    return quote === '"' && /\\["\\`$]/.test(value) ? ESCAPE : null;
  }
  // `KEY=   # note` and `KEY=value # note`; `KEY=#x` is "#x" for both.
  if (/\s#/.test(afterEquals)) return NOTE;
  return value.includes("\\") ? ESCAPE : null;
}
