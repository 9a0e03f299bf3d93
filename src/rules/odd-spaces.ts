/**
 * Spaces YAML does not take as spaces, where it needs one: a rules file pasted from a web page,
 * a PDF or a chat often carries no-break spaces (U+00A0) in its indentation or after `key:`.
 * They look like spaces, but YAML reads them as text: `    action: reject` indented with them
 * was reported by the library on the NEXT line ("'conditions:' is indented more than the line
 * above it"), and `action: reject` with one after the colon as a key it never named. Each is
 * reported where it is, with what it is. Inside a quoted or block scalar the character is
 * text YAML keeps as it is (a French subject wrapped after a no-break space), and it is left
 * alone there: that file was read as meant before, and refusing it stopped its reload. Pure.
 */
import { type Document, isScalar, visit } from "yaml";
import type { YamlProblem } from "./yaml-errors.ts";

/** Characters that look like a space (or like nothing) and that YAML reads as text. */
const ODD = "\u00a0\u1680\u2000-\u200b\u202f\u205f\u3000\ufeff";
/** Indentation with one of them, or one right after a `- ` or `key:` indicator. */
const INDENT = new RegExp(`^[ \\t]*[${ODD}]`);
const AFTER_INDICATOR = new RegExp(`^[ \\t]*(?:-[ \\t]+)*(?:-|[A-Za-z_][\\w-]*:)[${ODD}]`);

const NAMES: Readonly<Record<string, string>> = {
  "\u00a0": "a no-break space (U+00A0)",
  "\u200b": "a zero-width space (U+200B)",
  "\u3000": "an ideographic space (U+3000)",
  "\ufeff": "a byte order mark (U+FEFF)",
};

function nameOf(c: string): string {
  return NAMES[c] ?? `a Unicode space (U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")})`;
}

/** [start, end) offsets of the quoted and block scalars of `doc`: their text is taken as written. */
export function quotedScalarRanges(doc: Document): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  visit(doc, {
    Scalar(_key, node) {
      if (isScalar(node) && node.type !== "PLAIN" && node.range) ranges.push([node.range[0], node.range[1]]);
    },
  });
  return ranges;
}

/**
 * One problem per line that has such a character where YAML needs a plain space; `quoted`
 * (from quotedScalarRanges) are the spans where it is part of a value.
 */
export function oddSpaceProblems(text: string, quoted: ReadonlyArray<readonly [number, number]> = []): YamlProblem[] {
  const problems: YamlProblem[] = [];
  // A BOM that starts the file is the encoding's mark, not text (the file reader drops it too).
  let lineStart = text.startsWith("\ufeff") ? 1 : 0;
  for (const line of text.slice(lineStart).split("\n")) {
    const match = INDENT.exec(line) ?? AFTER_INDICATOR.exec(line);
    const offset = match === null ? -1 : lineStart + match[0].length - 1;
    if (match !== null && !quoted.some(([start, end]) => offset > start && offset < end)) {
      const what = nameOf(text.charAt(offset));
      problems.push({ offset, message: `${what} where YAML needs a plain space (pasted from a web page or a document?): retype it as a space` });
    }
    lineStart += line.length + 1;
  }
  return problems;
}
