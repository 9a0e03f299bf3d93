/**
 * JSON text that a terminal shows as it is, and that strict JSON readers take. JSON.stringify
 * escapes C0 controls but leaves DEL, C1 controls (U+009B is a CSI on its own), bidi overrides
 * and isolates, zero-width characters and line/paragraph separators as they are: printed by
 * `journalctl`, `docker logs`, `mailgw queue list --json` or `mailgw test --json`, a sender's
 * U+202E reversed the rest of the line. They only ever occur inside strings, where `\uXXXX`
 * decodes to the same value. Pure.
 */

/** What JSON.stringify leaves as it is and a terminal would act on or hide. */
const ESCAPE_IN_STRINGS = /[\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g;

/**
 * A lone surrogate as JSON.stringify escapes it (`\ud83d`: the only way it writes one; a paired
 * one is written as it is), after an even number of backslashes (so not a string's own `\\ud83d`).
 */
const ESCAPED_LONE_SURROGATE = /(?<!\\)((?:\\\\)*)\\ud[89a-f][0-9a-f]{2}/g;

/**
 * JSON.stringify(value, null, indent), with those characters written as \uXXXX and lone
 * surrogates as U+FFFD. JSON.stringify writes one as `\ud83d`, which strict readers refuse
 * (Rust's serde_json, as in Vector; PostgreSQL's jsonb): a log line naming a refused address cut
 * at 256 UTF-16 units in the middle of an emoji, or a `mailgw test --json` body preview cut the
 * same way, was a line such a log shipper could not read. Replaced in the text, not by a
 * replacer function, which made every log line 8 times slower to write.
 */
export function terminalSafeJson(value: unknown, indent?: number): string {
  const text = JSON.stringify(value, null, indent).replace(ESCAPE_IN_STRINGS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  return text.includes("\\ud") ? text.replace(ESCAPED_LONE_SURROGATE, "$1\\ufffd") : text;
}

/** What a one-line terminal message must not carry as it is: every C0 control, the line feed too. */
const UNSAFE_IN_LINE = /[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g;

/**
 * Text from a file name or a file (a rules file from a pull request, a name given on the command
 * line by a glob) as one line a terminal shows as it is, escaped as terminalSafeJson escapes it.
 * A line feed in it would start a line of its own: in a GitHub Actions log, `::notice::…` or
 * `::add-mask::…` at a line's start is a workflow command; an ESC sequence would act on the
 * terminal. Pure.
 */
export function terminalSafeLine(text: string): string {
  return text.replace(UNSAFE_IN_LINE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
