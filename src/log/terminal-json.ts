/**
 * JSON text that a terminal shows as it is. JSON.stringify escapes C0 controls but leaves DEL,
 * C1 controls (U+009B is a CSI on its own), bidi overrides and isolates, zero-width characters
 * and line/paragraph separators as they are: printed by `journalctl`, `docker logs`, `mailgw
 * queue list --json` or `mailgw test --json`, a sender's U+202E reversed the rest of the line.
 * They only ever occur inside strings, where `\uXXXX` decodes to the same value. Pure.
 */

/** What JSON.stringify leaves as it is and a terminal would act on or hide. */
const ESCAPE_IN_STRINGS = /[\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g;

/** JSON.stringify(value, null, indent), with those characters written as \uXXXX. */
export function terminalSafeJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, null, indent).replace(ESCAPE_IN_STRINGS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
