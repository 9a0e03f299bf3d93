/**
 * Escaping for the two output languages of http/: HTML (the stats page) and Prometheus label
 * values. Everything that came from a message or a relay goes through here before output.
 * Trusts: nothing; any string is safe to pass. Failure: none (pure functions).
 */

const HTML_ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Safe in element content and in double- or single-quoted attribute values. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
}

/** Label value per the text exposition format: backslash, double quote and line feed are escaped. */
export function escapePromLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}
