/**
 * Two ways a rule's regex silently fails on non-Latin text, found by a static look at the source
 * (which has already compiled):
 *
 * - `\p{…}`, `\P{…}` and `\u{…}` mean a Unicode property or code point only with the `u` (or `v`)
 *   flag. Without it JavaScript reads `\p{Script=Hangul}` as the letters "p{Script=Hangul}", and
 *   the default flags are "i": `value: '\p{Script=Hangul}'` compiled, linted clean and never
 *   matched Korean text.
 * - `\b` and `\B` only know ASCII letters, digits and `_` as word characters, with every flag:
 *   next to `с` or `견`, `\b` is a boundary only after an ASCII letter, so `\bсчёт\b` never
 *   matches "Ваш счёт готов".
 *
 * Pure; linear in the source.
 */

/** An unescaped `\p{`, `\P{` or `\u{` (e.g. `\p{`), or null. */
export function unicodeEscapeWithoutU(source: string, flags: string): string | null {
  if (flags.includes("u") || flags.includes("v")) return null;
  for (let i = 0; i < source.length; i++) {
    if (source[i] !== "\\") continue;
    const next = source[i + 1];
    if ((next === "p" || next === "P" || next === "u") && source[i + 2] === "{") return `\\${next}{`;
    i++; // the escaped character (`\\p{` is a backslash, then the letters)
  }
  return null;
}

const NON_ASCII_LETTER = /^[^\x00-\x7f]$/u;

function isNonAsciiLetter(char: string | undefined): boolean {
  return char !== undefined && NON_ASCII_LETTER.test(char) && /^\p{L}$/u.test(char);
}

/** The first `\b` or `\B` (outside a character class) next to a non-ASCII letter, as `\bс`, or null. */
export function asciiBoundaryNextToLetter(source: string): string | null {
  const chars = [...source];
  let inClass = false;
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i];
    if (c === "\\") {
      const next = chars[i + 1];
      if (!inClass && (next === "b" || next === "B")) {
        // Past a group's opening (`\b(견적|quote)`, `\b(?:견적)`) and before its closing (`(счёт)\b`).
        let after = i + 2;
        if (chars[after] === "(") after += chars[after + 1] === "?" && chars[after + 2] === ":" ? 3 : 1;
        const beforeAt = chars[i - 1] === ")" ? i - 2 : i - 1;
        const before = beforeAt >= 0 && chars[beforeAt - 1] !== "\\" ? chars[beforeAt] : undefined;
        if (isNonAsciiLetter(chars[after])) return `\\${next}${chars.slice(i + 2, after + 1).join("")}`;
        if (isNonAsciiLetter(before)) return `${chars.slice(beforeAt, i).join("")}\\${next}`;
      }
      i++;
    } else if (c === "[") {
      inClass = true;
    } else if (c === "]") {
      inClass = false;
    }
  }
  return null;
}

/** A property escape of letter case: under the i flag (with u) it matches letters of either case. */
const CASE_PROPERTY = /\\[pP]\{\s*(?:(?:gc|General_Category)\s*=\s*)?(?:Lu|Ll|Lt|LC|Uppercase_Letter|Lowercase_Letter|Titlecase_Letter|Cased_Letter|Uppercase|Lowercase)\s*\}/;

/**
 * The first letter-case property escape (`\p{Lu}`, `\p{Lowercase}`…) in a regex compiled with
 * both the i and the u flag, or null: case-insensitive matching folds them, so `\p{Lu}` matches
 * "a" too and `^[\p{Lu}\s]+$`, an "all capitals" check, matched every subject of letters.
 */
export function caseClassUnderI(source: string, flags: string): string | null {
  if (!flags.includes("i") || !(flags.includes("u") || flags.includes("v"))) return null;
  return CASE_PROPERTY.exec(source)?.[0] ?? null;
}
