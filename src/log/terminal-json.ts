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

/** Half of a surrogate pair without its other half. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * Strings with a lone surrogate as U+FFFD. JSON.stringify writes one as `\ud83d`, which strict
 * readers refuse (Rust's serde_json, as in Vector; PostgreSQL's jsonb): a log line naming a
 * refused address cut at 256 UTF-16 units in the middle of an emoji, or a `mailgw test --json`
 * body preview cut the same way, was a line such a log shipper could not read.
 */
function wellFormed(_key: string, value: unknown): unknown {
  return typeof value === "string" ? value.replace(LONE_SURROGATE, "\ufffd") : value;
}

/** JSON.stringify(value, null, indent), with those characters written as \uXXXX and lone surrogates as U+FFFD. */
export function terminalSafeJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, wellFormed, indent).replace(ESCAPE_IN_STRINGS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
