/**
 * A static look at a rule's regex for the shape that backtracks catastrophically (ReDoS) in a
 * backtracking engine such as JavaScriptCore's: a group repeated without bound (`*`, `+`,
 * `{n,}`) whose body, in some branch, is made only of repeated or optional parts, so the same
 * text can be split between the inner and the outer repetition in exponentially many ways:
 * `(a+)+$`, `(a*)*`, `(\w+\s?)*$`, `(?:x+x+)+y`, `(a+|b)*`. A branch with one part that must
 * occur exactly once (`(\w+\.)+com`, `([a-z0-9-]+\.)+`) separates the repetitions and is not
 * reported, nor is a bounded outer repetition (`(\d{1,3}\.){3}`). Overlapping alternatives
 * (`(a|aa)+`) are not detected: a warning is a hint, its absence no proof.
 * Pure; the source has already compiled (lint refuses invalid regexes before this runs).
 */

interface Group {
  /** The current branch has a part that repeats (`a+`, `a{2,5}`, a group that does). */
  repeats: boolean;
  /** The current branch has a part that must occur exactly once per match of the branch. */
  anchored: boolean;
  /** Some branch closed so far repeats with nothing anchored (the risky body). */
  loose: boolean;
  /** Every branch closed so far is anchored. */
  allAnchored: boolean;
  /** Some branch closed so far repeats. */
  anyRepeats: boolean;
}

interface Quantifier {
  min: number;
  max: number;
  length: number;
}

const newGroup = (): Group => ({ repeats: false, anchored: false, loose: false, allAnchored: true, anyRepeats: false });

function closeBranch(g: Group): void {
  if (g.repeats && !g.anchored) g.loose = true;
  if (!g.anchored) g.allAnchored = false;
  if (g.repeats) g.anyRepeats = true;
  g.repeats = false;
  g.anchored = false;
}

/** The quantifier at `i` (`*`, `+`, `?`, `{n}`, `{n,}`, `{n,m}`, with a lazy `?`), or null. */
function quantifierAt(source: string, i: number): Quantifier | null {
  const c = source[i];
  let q: Quantifier | null = null;
  if (c === "*") q = { min: 0, max: Infinity, length: 1 };
  else if (c === "+") q = { min: 1, max: Infinity, length: 1 };
  else if (c === "?") q = { min: 0, max: 1, length: 1 };
  else if (c === "{") {
    const m = /^\{(\d+)(,(\d*))?\}/.exec(source.slice(i));
    if (m) {
      const min = Number(m[1]);
      const max = m[2] === undefined ? min : m[3] === "" ? Infinity : Number(m[3]);
      q = { min, max, length: m[0].length };
    }
  }
  if (q && source[i + q.length] === "?") q.length++;
  return q;
}

/** Index just past the escape starting at `i` (a backslash). */
function escapeEnd(source: string, i: number): number {
  const next = source[i + 1];
  const braced = /^\\[pPu]\{[^}]*\}|^\\k<[^>]*>/.exec(source.slice(i));
  if (braced) return i + braced[0].length;
  if (next === "x") return i + 4;
  if (next === "u") return i + 6;
  if (next === "c") return i + 3;
  return i + 2;
}

/** Index just past the character class starting at `i` (`[`). */
function classEnd(source: string, i: number): number {
  let j = i + 1;
  if (source[j] === "^") j++;
  if (source[j] === "]") j++;
  while (j < source.length && source[j] !== "]") j += source[j] === "\\" ? 2 : 1;
  return j + 1;
}

/** Length of a group's opening: `(`, `(?:`, `(?=`, `(?!`, `(?<=`, `(?<!`, `(?<name>`. */
function groupOpening(source: string, i: number): { length: number; lookaround: boolean } {
  const m = /^\((\?(:|=|!|<=|<!|<[^>]*>))?/.exec(source.slice(i));
  const kind = m?.[2] ?? "";
  return { length: m?.[0].length ?? 1, lookaround: kind === "=" || kind === "!" || kind === "<=" || kind === "<!" };
}

/**
 * The first group of `source` repeated without bound over a body that can match the same text
 * in several ways (see above), as written in the source, e.g. `(a+)+`; null when there is none.
 */
export function nestedRepetition(source: string): string | null {
  const stack: { group: Group; start: number; lookaround: boolean }[] = [{ group: newGroup(), start: 0, lookaround: false }];
  let i = 0;
  while (i < source.length) {
    const c = source[i];
    const top = stack[stack.length - 1];
    if (top === undefined) return null;
    let closed: { group: Group; start: number; lookaround: boolean } | null = null;
    if (c === "(") {
      const opening = groupOpening(source, i);
      stack.push({ group: newGroup(), start: i, lookaround: opening.lookaround });
      i += opening.length;
      continue;
    } else if (c === "|") {
      closeBranch(top.group);
      i++;
      continue;
    } else if (c === "^" || c === "$") {
      i++;
      continue;
    } else if (c === ")") {
      if (stack.length === 1) return null;
      closed = stack.pop() ?? null;
      if (closed) closeBranch(closed.group);
      i++;
    } else if (c === "\\") {
      const next = source[i + 1];
      i = escapeEnd(source, i);
      if (next === "b" || next === "B") continue;
    } else if (c === "[") {
      i = classEnd(source, i);
    } else {
      i++;
    }
    const parent = stack[stack.length - 1];
    if (parent === undefined) return null;
    const q = quantifierAt(source, i);
    if (q) i += q.length;
    if (closed?.lookaround) continue; // zero-width: neither repeats nor anchors
    if (closed && q && q.max === Infinity && closed.group.loose) return source.slice(closed.start, i);
    const innerRepeats = closed ? closed.group.anyRepeats : false;
    if ((q && q.max > 1) || innerRepeats) parent.group.repeats = true;
    if (!q || (q.min === 1 && q.max === 1)) {
      if (!closed || closed.group.allAnchored) parent.group.anchored = true;
    }
  }
  return null;
}
