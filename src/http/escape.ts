/**
 * Escaping for the two output languages of http/: HTML (the stats page) and Prometheus label
 * values. Everything that came from a message or a relay goes through here before output.
 * Trusts: nothing; any string is safe to pass. Failure: none (pure functions).
 */

const HTML_ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/**
 * Control characters but tab and line feed: a browser shows nothing (or a box) for them, and
 * `curl /stats` in a terminal ran a sender's subject's ESC sequences there (OSC 0 sets the window
 * title, OSC 52 the clipboard, CSI 2J clears the screen; U+009B is a CSI too) and its CR wrote
 * over the line.
 */
const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/g;

/**
 * Safe in element content and in double- or single-quoted attribute values, and in a terminal:
 * CR and CRLF become LF, as the HTML parser makes them anyway, and other controls a `?`, as
 * `mailgw queue list` shows them.
 */
export function escapeHtml(value: string): string {
  return value.replace(/\r\n?/g, "\n").replace(CONTROLS, "?").replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
}

/** Label value per the text exposition format: backslash, double quote and line feed are escaped. */
export function escapePromLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}
